"""A projected discriminator (Sauer et al. 2021, "Projected GANs converge faster"): small discriminators that
judge the features a frozen, pretrained network sees in an image rather than its pixels.

A discriminator learning from pixels has to learn what a face is before it can tell the generator what is wrong
with one; pretrained features hand it that knowledge, which is what made projected GANs converge an order of
magnitude faster. The only pretrained network that ships offline and knows faces is the detector's RetinaFace
(`RetinaFaceNet`, the same weights in torch): its backbone was trained to find faces and their landmarks, so
its features say where eyes, nose and mouth are and whether they make a face. CenterFace, which `evaluate`
uses to judge "still a face", plays no part here.

Per scale of the backbone, a fixed random 1×1 convolution mixes its channels (the paper's cross-channel
mixing, which keeps the discriminator from leaning on a few dominant features) and a small trained head
(spectral norm, strided convolutions down to 4×4) gives a map of real/fake logits. Both images are augmented
the same differentiable way (DiffAugment: colour and translation), so the heads cannot memorise the training
faces.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

from anoncli.detectors.retinaface_net import RetinaFaceNet

# The last activation of each backbone stage: strides 4, 8, 16 and 32, with 32, 64, 128 and 256 channels.
BACKBONE_TAPS = (
    "/fx/stage1/stage1.3/stage1.3.1/stage1.3.1.2/LeakyRelu_output_0",
    "/fx/stage1/stage1.5/stage1.5.1/stage1.5.1.2/LeakyRelu_output_0",
    "/fx/stage2/stage2.5/stage2.5.1/stage2.5.1.2/LeakyRelu_output_0",
    "/fx/stage3/stage3.1/stage3.1.1/stage3.1.1.2/LeakyRelu_output_0",
)
TAP_CHANNELS = (32, 64, 128, 256)
TAP_STRIDES = (4, 8, 16, 32)
# The backbone sees the square at this side: the face (two thirds of it) is then about as large as the faces
# its middle scales were trained to find.
VIEW_SIDE = 128
HEAD_WIDTH = 64
MIXING_SEED = 0  # the fixed channel mixing is drawn from this seed, so a resumed run mixes the same way
TRANSLATION = 0.125  # DiffAugment's shift, as a share of the side


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """DiffAugment's colour (brightness, saturation, contrast) and translation, drawn per image; differentiable
    in `images` (N, 3, H, W, in [-1, 1])."""
    count = images.shape[0]

    def draw(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(count, 1, 1, 1, generator=generator)).to(images.device)

    images = images + draw(-0.5, 0.5)
    mean = images.mean(dim=1, keepdim=True)
    images = (images - mean) * draw(0.0, 2.0) + mean
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * draw(0.5, 1.5) + mean
    shift = (torch.rand(count, 2, generator=generator) * 2 - 1) * TRANSLATION * 2  # grid units span 2
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _head(side: int) -> nn.Sequential:
    """Strided convolutions from a `side`² feature map down to 4×4 logits."""
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(side // 4))):
        layers += [parametrizations.spectral_norm(nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 4, 2, 1)), nn.LeakyReLU(0.2)]
    layers.append(parametrizations.spectral_norm(nn.Conv2d(HEAD_WIDTH, 1, 1)))
    return nn.Sequential(*layers)


class ProjectedDiscriminator(nn.Module):
    """Real/fake logit maps (one per backbone scale) for RGB squares in [-1, 1] of any side."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = RetinaFaceNet()  # frozen; its batch norms are folded into the convolutions
        draw = torch.Generator().manual_seed(MIXING_SEED)
        self.mixing = nn.ModuleList()
        for channels in TAP_CHANNELS:
            mixing = nn.Conv2d(channels, HEAD_WIDTH, 1, bias=False)
            bound = math.sqrt(3 / channels)  # unit gain for unit-variance inputs
            mixing.weight.data.uniform_(-bound, bound, generator=draw)
            self.mixing.append(mixing.requires_grad_(False))
        self.heads = nn.ModuleList(_head(VIEW_SIDE // stride) for stride in TAP_STRIDES)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        view = F.interpolate(images, size=(VIEW_SIDE, VIEW_SIDE), mode="bilinear", align_corners=False)
        features = self.backbone.features(view, BACKBONE_TAPS)
        return [head(mixing(feature)) for head, mixing, feature in zip(self.heads, self.mixing, features)]

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The heads' weights: all a checkpoint needs, since the backbone ships and the mixing is seeded."""
        return self.heads.state_dict()

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        self.heads.load_state_dict({name: tensor.float() for name, tensor in state.items()})


def projected_loss(logits: list[torch.Tensor], real: bool) -> torch.Tensor:
    """Non-saturating loss over every scale's logits, for images that should be judged `real` (or not)."""
    sign = -1.0 if real else 1.0
    return sum(F.softplus(sign * scale).mean() for scale in logits) / len(logits)
