"""torchrun, as `python3 -m torch.distributed.run` runs it, for the distributed tests.

Debian's PyTorch 2.6 is built without libuv, yet the TCPStore of torchrun's static rendezvous asks
for the libuv transport whatever USE_LIBUV says, and fails. Where TCPStore takes `use_libuv`, the
store is made on the classic transport instead; nothing else changes.
"""
import sys

import torch.distributed as dist
from torch.distributed.elastic.rendezvous import static_tcp_rendezvous
from torch.distributed.run import main

if "use_libuv" in (dist.TCPStore.__init__.__doc__ or ""):

    class ClassicTCPStore(dist.TCPStore):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("use_libuv", False)
            super().__init__(*args, **kwargs)

    static_tcp_rendezvous.TCPStore = ClassicTCPStore

if __name__ == "__main__":
    sys.exit(main())
