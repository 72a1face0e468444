"""Hydra applications that train and evaluate TAGI networks and gather their results."""
