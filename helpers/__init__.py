"""Shared code for the fine-tuning course. One module per concern; notebooks import from here."""
