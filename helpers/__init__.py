"""Shared code for the fine-tuning course. One module per concern; notebooks import from here."""
from helpers.env import quiet_known_warnings

quiet_known_warnings()
