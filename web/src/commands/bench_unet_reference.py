# Reference runtime for `atelier bench unet`: diffusers on PyTorch CPU, fp32, with random
# weights of the same UNet and VAE configs, the same input shapes and thread count. Reads a
# JSON job on stdin, prints one JSON result (seconds per run, median) on stdout.
import json
import sys
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

job = json.load(sys.stdin)
torch.set_num_threads(job["threads"])
torch.manual_seed(0)


def timed(run):
    run()  # warm-up
    times = []
    for _ in range(job["runs"]):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def config(c):
    return {k: v for k, v in c.items() if not k.startswith("_")}


result = {"unet": {}, "vae": {}, "torch": torch.__version__}
with torch.inference_mode():
    unet = UNet2DConditionModel(**config(job["unet"])).eval()
    text = torch.randn(1, job["text_tokens"], job["unet"]["cross_attention_dim"])
    for size in job["sizes"]:
        latents = torch.randn(1, 4, size // 8, size // 8)
        result["unet"][str(size)] = timed(lambda: unet(latents, 981, text).sample)
        print(f"diffusers UNet {size}: {result['unet'][str(size)]:.2f} s", file=sys.stderr)
    del unet
    vae = AutoencoderKL(**config(job["vae"])).eval()
    for size in job["vae_sizes"]:
        latents = torch.randn(1, 4, size // 8, size // 8)
        result["vae"][str(size)] = timed(lambda: vae.decode(latents).sample)
        print(f"diffusers VAE decode {size}: {result['vae'][str(size)]:.2f} s", file=sys.stderr)
json.dump(result, sys.stdout)
