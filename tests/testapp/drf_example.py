# The complete example of docs/drf.md (a test keeps the two equal and runs it).
from celery import shared_task
from rest_framework import routers, serializers, viewsets

from tasktrail import feed, progress
from tasktrail.contrib.rest_framework.viewsets import RunActionsMixin
from tests.testapp.models import Document


@shared_task
def process_document(document_id: int) -> dict[str, int]:
    for step, stage in enumerate(("parsing", "analysing", "indexing"), start=1):
        progress(step, 3, stage)
        feed(f"{stage} done", "success")
    return {"document": document_id}


class DocumentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Document
        fields = ["id", "uuid", "title"]


class DocumentViewSet(RunActionsMixin, viewsets.ModelViewSet):
    queryset = Document.objects.all()
    serializer_class = DocumentSerializer
    run_task = process_document  # POST documents/<pk>/process/ answers 202

    def perform_create(self, serializer):
        # The seeds' way: the object's uuid is the task id, plain apply_async. The
        # run belongs to the requesting user (tasktrail's RunOwnerMiddleware).
        document = serializer.save()
        process_document.apply_async((document.pk,), task_id=str(document.uuid))


router = routers.SimpleRouter()
router.register("documents", DocumentViewSet)
