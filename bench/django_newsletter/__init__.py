"""The django-newsletter baseline: see run.py."""
