"""Analysis: numbers about trained models, never figures.

* :mod:`~vaekit.analysis.inference`: the one inference layer (:class:`Inference`).
* :mod:`~vaekit.analysis.bounds`: ELBO and IWAE bounds, active units (``vaekit evaluate``).
* :mod:`~vaekit.analysis.embedding`: embeddings and probes (``vaekit embed``).
* :mod:`~vaekit.analysis.anomaly`: anomaly scores and AUROC protocols (``vaekit anomaly``).
* :mod:`~vaekit.analysis.denoise`: denoising (``vaekit denoise``).
* :mod:`~vaekit.analysis.latent`, :mod:`~vaekit.analysis.separation`, :mod:`~vaekit.analysis.manifold`:
  latent-space operations; :class:`~vaekit.analysis.explorer.Explorer` ties them to a run.
* :mod:`~vaekit.analysis.attributes`: attribute directions (``vaekit attribute``).
"""

from vaekit.analysis.inference import Inference, inference_for

__all__ = ["Inference", "inference_for"]
