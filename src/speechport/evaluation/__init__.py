"""Task-quality evaluations of a bundle on a labelled set (``speechport eval``): unlike
``verify``, which compares a bundle with its own reference, these measure what users get
(keyword spotting: recall and false alarms)."""
