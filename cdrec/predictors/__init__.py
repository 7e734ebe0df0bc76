"""Family predictors beyond collaborative filtering (see :mod:`cdrec.predict` for the contract):

* :class:`~cdrec.predictors.sequence.SequencePredictor` — task ``sequential`` (SASRec, BERT4Rec, MERIT);
* :class:`~cdrec.predictors.ctr.CTRPredictor` — task ``ctr`` (M3oE and its baselines).

Each is built by its task's ``predictor(cfg, run_dir)``; ``cdrec.load`` picks the task.
"""
