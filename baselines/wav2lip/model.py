"""The Wav2Lip generator (96x96), module names and shapes identical to the official `models/wav2lip.py`
so that the official `wav2lip.pth` / `wav2lip_gan.pth` state dicts load with strict=True.

Layout: a U-Net whose bottleneck is an audio embedding. Face encoder (6-channel input: the lower-half
masked target face + a reference face) 96 -> 48 -> 24 -> 12 -> 6 -> 3 -> 1; audio encoder on a
[1, 80, 16] mel window -> [512, 1, 1]; the decoder upsamples from the audio embedding, concatenating
the encoder feature of the same resolution after every block; a sigmoid head gives RGB in [0, 1].
"""
from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Module):
    """conv -> batch norm (-> + input when residual) -> ReLU. Official name: models.conv.Conv2d."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int | tuple[int, int], padding: int,
                 residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class DeconvBNReLU(nn.Module):
    """transposed conv -> batch norm -> ReLU. Official name: models.conv.Conv2dTranspose."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, padding: int, output_padding: int = 0):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
                                        nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _res(ch: int, n: int) -> list[nn.Module]:
    """n residual 3x3 blocks at constant width."""
    return [ConvBNReLU(ch, ch, 3, 1, 1, residual=True) for _ in range(n)]


def _down(cin: int, cout: int, n_res: int, k: int = 3, stride: int = 2, pad: int = 1) -> nn.Sequential:
    return nn.Sequential(ConvBNReLU(cin, cout, k, stride, pad), *_res(cout, n_res))


def _up(cin: int, cout: int, n_res: int) -> nn.Sequential:
    """x2 upsampling block (3x3, stride 2, output_padding 1) + residual blocks."""
    return nn.Sequential(DeconvBNReLU(cin, cout, 3, 2, 1, 1), *_res(cout, n_res))


class Wav2Lip(nn.Module):
    """Generator: forward(mel [B,1,80,16], faces [B,6,96,96] in [0,1]) -> [B,3,96,96] in [0,1]."""

    def __init__(self) -> None:
        super().__init__()
        # encoder widths 16,32,64,128,256,512,512; skip features feed the decoder in reverse order
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBNReLU(6, 16, 7, 1, 3)),          # 96
            _down(16, 32, 2),                                    # 48
            _down(32, 64, 3),                                    # 24
            _down(64, 128, 2),                                   # 12
            _down(128, 256, 2),                                  # 6
            _down(256, 512, 1),                                  # 3
            nn.Sequential(ConvBNReLU(512, 512, 3, 1, 0), ConvBNReLU(512, 512, 1, 1, 0)),  # 1
        ])
        # mel 80x16 -> 80x16 -> 27x16 -> 9x6 -> 3x3 -> 1x1
        self.audio_encoder = nn.Sequential(
            ConvBNReLU(1, 32, 3, 1, 1), *_res(32, 2),
            ConvBNReLU(32, 64, 3, (3, 1), 1), *_res(64, 2),
            ConvBNReLU(64, 128, 3, 3, 1), *_res(128, 2),
            ConvBNReLU(128, 256, 3, (3, 2), 1), *_res(256, 1),
            ConvBNReLU(256, 512, 3, 1, 0),
            ConvBNReLU(512, 512, 1, 1, 0),
        )
        # each decoder input = previous output + the matching encoder feature (channel concat)
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBNReLU(512, 512, 1, 1, 0)),                               # 1   (+512)
            nn.Sequential(DeconvBNReLU(1024, 512, 3, 1, 0), *_res(512, 1)),             # 3   (+512)
            _up(1024, 512, 2),                                                          # 6   (+256)
            _up(768, 384, 2),                                                           # 12  (+128)
            _up(512, 256, 2),                                                           # 24  (+64)
            _up(320, 128, 2),                                                           # 48  (+32)
            _up(160, 64, 2),                                                            # 96  (+16)
        ])
        self.output_block = nn.Sequential(ConvBNReLU(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        """Also accepts the official 5-D form: audio [B,T,1,80,16], faces [B,6,T,96,96] -> [B,3,T,96,96]."""
        five_d = face_sequences.dim() > 4
        B = audio_sequences.size(0)
        if five_d:
            T = audio_sequences.size(1)
            audio_sequences = torch.cat([audio_sequences[:, i] for i in range(T)], dim=0)
            face_sequences = torch.cat([face_sequences[:, :, i] for i in range(T)], dim=0)
        x = self.audio_encoder(audio_sequences)
        feats = []
        f = face_sequences
        for block in self.face_encoder_blocks:
            f = block(f)
            feats.append(f)
        for block, skip in zip(self.face_decoder_blocks, reversed(feats)):
            x = torch.cat((block(x), skip), dim=1)
        out = self.output_block(x)
        if five_d:
            out = torch.stack(torch.split(out, B, dim=0), dim=2)
        return out


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official checkpoints were saved from nn.DataParallel: keys start with 'module.'."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def load_wav2lip(path, device: str | torch.device = "cpu") -> Wav2Lip:
    """Load an official checkpoint ({'state_dict': ..., 'optimizer': ..., 'global_step': ...}) strictly."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    state = ckpt["state_dict"] if isinstance(ckpt, dict) and "state_dict" in ckpt else ckpt
    model = Wav2Lip()
    model.load_state_dict(strip_module_prefix(state), strict=True)
    return model.to(device).eval()
