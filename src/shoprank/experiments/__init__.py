"""Online experiments of the ranking service: A/B tests and interleaving (docs/experiments.md).

Running an experiment: :mod:`.assign` hashes a request's unit into an arm, :mod:`.interleave`
merges two rankers' pages by team draft and :mod:`.arms` puts each challenger's model into
the bundle; the service's side is :mod:`shoprank.ranking.experiment`.

Reading an experiment: :mod:`.outcomes` joins the feedback log's records of one experiment
into per-request outcomes, :mod:`.stats` holds the intervals, the sample-ratio check and the
always-valid sequential test, :mod:`.report` builds the report of each mode, :mod:`.step` is
the step `shoprank experiment` runs and :mod:`.gate` is what `shoprank select` asks before a
promotion when ``experiment.gate_promotion`` is on.
"""
