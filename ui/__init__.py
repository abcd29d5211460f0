"""UI-only helpers for the Gradio page in app.py: formatting, plots, the confusion-matrix cache.

Nothing here predicts or trains; it turns what inference/ and training/ report into
what the page shows.
"""
