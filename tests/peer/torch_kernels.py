"""The peers compute with PyTorch's kernels; where its oneDNN convolutions are wrong (Debian 13's
PyTorch 2.6 on a VM whose cpuid reports no cache sizes: a ResNet downsample 44 % off in
channels-last, NaN when training), they are turned off, as ips turns them off for itself
(cpu_kernels_check in src/engine/precision.cpp), so that a peer stays the reference it is. The
same probe: a 1x1 stride-2 convolution, 256 -> 512 channels, in both layouts, on inputs that are
not random."""
import torch


def check():
    x = torch.sin(torch.arange(2 * 256 * 7 * 7, dtype=torch.float32)).view(2, 256, 7, 7)
    w = torch.cos(torch.arange(512 * 256, dtype=torch.float32) * 0.37).view(512, 256, 1, 1)
    with torch.no_grad():
        want = torch.nn.functional.conv2d(x, w, stride=2)
        got = torch.nn.functional.conv2d(x.contiguous(memory_format=torch.channels_last),
                                         w.contiguous(memory_format=torch.channels_last), stride=2)
    if float((got - want).abs().max()) > 1e-4 * float(want.abs().max()):
        torch.backends.mkldnn.enabled = False


check()
