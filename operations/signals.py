"""Signals of the runner, so other apps react to an operation's end without the runner importing them."""
from django.dispatch import Signal

# Sent once an operation ran to its end in this process (success or failure), after ``cleanup``;
# arguments: ``kind`` (the Kind) and ``row_id``. A row the reaper fails sends nothing.
operation_finished = Signal()
