"""noisy_extract: an invoice field extractor whose outcome is noisy.

Each row is one upload of an invoice (some invoices are uploaded two to four times, each upload its
own id). The graph OCRs the pages (``ocr``), asks a model for ``vendor | 1234.50 EUR | 2024-03-05``
(``extract``) and checks the format (``validate``), going back to ``extract`` while the output fails
validation and ``extractor.validate_retries`` allows. Objective: ``exact`` (all three fields right).
Guardrails: mean cost at most 1.5x the shipped config's, error rate at most 5%.

Whether an attempt comes out right is a Bernoulli draw keyed by the upload id and the model, prompt
style and dpi, with a probability set by the config and the invoice (source, layout, date locale):
repeated uploads of one invoice can differ, and two configs are judged on independent draws, so
differences of ~3 points are within the noise of 150-200 rows.

What matters (``logic.py``):

- ``ocr.dpi``: the pages are ~300 dpi originals. Below 300 the OCR misreads digits of the total on
  scans and photos; above 300 it amplifies their noise (more misreads), and OCR time grows with the
  pixel count, so at 600 dpi the longest invoices time out (~2-3% errors).
- ``extractor.prompt_style``: ``plain`` fails validation often and reads day-first dates month-first;
  ``schema`` fixes both; ``few_shot`` is the most accurate but sends three worked invoices per call.
- ``extractor.validate_retries``: recovers outputs that failed validation, at the cost of a call each.
- ``extractor.model``: ``docllm-pro`` is the most accurate and breaks the cost guardrail with every
  prompt (3-7x); ``docllm-std`` with ``few_shot`` breaks it too (~2x); ``docllm-mini`` is cheap and
  weaker on invoices with several totals.
- ``extractor.temperature``, ``ocr.language_hint``, ``logging.level``, ``telemetry.batch_size`` and
  ``queue.priority`` do nothing to any outcome (configs differing only in them score identically).

Landscape (2592 grid configs, 81 distinct in the knobs that matter): the shipped config (std, plain,
no retries, 150 dpi) scores ~0.6 exact (dev 0.625, test 0.587). The best feasible, ~0.91 (dev 0.91,
test 0.92), is std + schema + 300 dpi + at least one retry (1 and 3 are within a point): three
coordinated moves, each alone worth only 0.64-0.72. Next come a band of configs at 0.80-0.85 (std
schema without retries, mini few_shot, the 600 dpi variants), a few points apart and hard to rank on
this many rows; the cost-breaking pro and std few_shot configs reach up to ~0.97 but are infeasible.
Only the two best distinct configs (2.5% of the grid) reach 95% of the best on dev and on test.
"""

REQUEST = "noisy_extract gets too many invoice fields wrong; please improve its accuracy."

from .replay import replay  # noqa: E402,F401
