"""The shop: every scenario of the seeds as models, tasks, JSON views and pages."""
