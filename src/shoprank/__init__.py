"""shoprank: language-model-powered e-commerce search ranking."""

__version__ = "0.1.0"
