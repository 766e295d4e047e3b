"""`stepvoice eval`: the published Step-Audio 2 mini tables, reproduced with the field's standard scorers.

- `loaders_asr`, `loaders_bench`: datasets in their publishers' own layouts -> `items.Dataset`
- `normalise`: Whisper-style English normalisation, Chinese CER normalisation
- `scorers`: jiwer WER/CER, sacrebleu BLEU, StepEval tool-call counts, multiple-choice accuracy
- `tasks`: per task the loader, session preset, user text, item score and corpus summary
- `runner`: items through a Session into results.jsonl (resumable)
- `report`, `published`: summary.json, the printed table beside the published figures, compare + plot
"""
