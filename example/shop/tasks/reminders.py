"""Seed 004: an e-mail reminder through Django's e-mail framework."""

from __future__ import annotations

from django.core.mail import send_mail
from django.utils import timezone

from tasktrail import feed, tracked_task

from ..models import Todo


@tracked_task
def send_task_reminder(todo_id: int) -> str:
    """E-mail the owner of a to-do that it is due (console backend by default)."""
    try:
        todo = Todo.objects.select_related("owner").get(pk=todo_id)
    except Todo.DoesNotExist:
        feed(f"To-do {todo_id} not found; nothing to send", "warning")
        return f"To-do {todo_id} not found"
    recipient = todo.owner.email or f"{todo.owner.get_username()}@shop.example"
    send_mail(
        subject=f"Reminder: {todo.title}",
        message=f'Your task "{todo.title}" is due on {todo.due_date}.',
        from_email=None,
        recipient_list=[recipient],
    )
    Todo.objects.filter(pk=todo.pk).update(reminded_at=timezone.now())
    feed(f"Reminder for {todo.title!r} sent to {recipient}", "success")
    return f"Reminder sent for to-do {todo_id} to {recipient}"
