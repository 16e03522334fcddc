"""What a pass over one account uses between its requests and the store: the batcher commits
its observations a batch at a time (batcher.py), the hint gate makes it give way while a
notification is checked (hint_gate.py), and its report counts what it did (report.py)."""
