"""Model inputs, below training, evaluation and serving alike.

- :mod:`~shoprank.inputs.frame`: the frame that carries them (scalars and text vectors);
- :mod:`~shoprank.inputs.declare`: every model input declared once;
- :mod:`~shoprank.inputs.derive`: the derivations of the derived inputs, array-first;
- :mod:`~shoprank.inputs.texts`: the item texts a fine-tuned encoder tokenizes, from the catalog.
"""
