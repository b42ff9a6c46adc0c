"""Image-quality metrics, one module per job.

- :mod:`spgd.metrics.pixel`: PSNR and SSIM as piq 0.8.0 defines them (per image).
- :mod:`spgd.metrics.lpips`: LPIPS as the lpips package (AlexNet, VGG) and piq (VGG, average pooling)
  compute it (per image), each recorded under its own label.
- :mod:`spgd.metrics.inception`: the FID Inception-v3 feature extractor (pytorch-fid / torch-fidelity
  weights file ``pt_inception-2015-12-05-6726825d.pth``).
- :mod:`spgd.metrics.fid`: Fréchet distance, FID and KID of two sets of features (whole-set scores),
  statistics files.

Every network loads local weights only; nothing is downloaded.
"""

from spgd.metrics.lpips import LPIPS, LPIPS_VARIANTS, LPIPS_WEIGHTS_HELP, lpips_or_reason
from spgd.metrics.pixel import psnr, ssim

__all__ = ["psnr", "ssim", "LPIPS", "LPIPS_VARIANTS", "lpips_or_reason", "LPIPS_WEIGHTS_HELP"]
