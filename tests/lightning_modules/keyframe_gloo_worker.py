"""Two gloo processes tokenize their shard (rank r: images r::2) with a saved KeyframeTokenizer module and write the ids
to ``<out>/ids_rank<r>.pt`` (used by test_keyframe_tokenizer.py)."""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank: int, ckpt: str, out: str) -> None:
    # a file rendezvous in the test's own folder: no fixed TCP port to collide with parallel workers
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out, 'gloo_init')}", rank=rank, world_size=2)
    from lightning_modules.keyframe_tokenizer import KeyframeTokenizer

    saved = torch.load(ckpt, weights_only=True)
    torch.manual_seed(1000 + rank)  # a different global RNG state per rank must not matter
    model = KeyframeTokenizer("tiny").eval()
    model.load_state_dict(saved["state_dict"])
    ids = model(saved["images"][rank::2])
    gathered = [None, None]
    dist.all_gather_object(gathered, [t.tolist() for t in ids])  # the ranks really ran together
    torch.save(ids, os.path.join(out, f"ids_rank{rank}.pt"))
    dist.barrier()  # neither rank tears gloo down while the other still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1], sys.argv[2]), nprocs=2, join=True)
