"""The warehouse: the conformed model (schema `model`) built from staged history and identity."""
