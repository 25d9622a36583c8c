"""CTR models: the BERT-CTR Lightning module and baselines."""
