# Reference runtime for `atelier bench llm`: llama-cpp-python on the same GGUF, threads and
# prompts, greedy. Reads a JSON job on stdin, prints one JSON result on stdout.
import json
import sys
import time

from llama_cpp import Llama

job = json.load(sys.stdin)
llm = Llama(
    model_path=job["model"],
    n_ctx=job["n_ctx"],
    n_threads=job["threads"],
    n_threads_batch=job["threads"],
    n_batch=job["batch"],
    n_ubatch=job["batch"],
    verbose=False,
)
eos = llm.token_eos()
runs = []
for prompt in job["prompts"]:
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    llm.reset()  # no reuse of the previous run's cache
    generated = 0
    start = time.perf_counter()
    first = None
    for token in llm.generate(tokens, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        now = time.perf_counter()
        if first is None:
            first = now
        if token == eos:
            break
        generated += 1
        if generated >= job["max_tokens"]:
            break
    end = time.perf_counter()
    runs.append({
        "prompt_tokens": len(tokens),
        "prompt_s": (first or end) - start,
        "generated": generated,
        "generate_s": end - (first or end),
    })
print(json.dumps({"runs": runs}))
