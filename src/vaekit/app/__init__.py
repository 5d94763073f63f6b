"""The live latent explorer: a local web app over a trained model (``vaekit explore``)."""
