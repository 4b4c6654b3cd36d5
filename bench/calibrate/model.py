"""Triton Python-backend model for calibration: a real PyTorch network on the GPU, random weights.

The network is picked by the model's name (the directory Triton loaded it from):
- resnet50, resnet18: ResNet-50 / ResNet-18 (torchvision), fp16, UNBUSY_ITEMS images of 224x224
  per request (ResNet-18 is the smaller model a fallback variant serves);
- bert-base: a BERT-base sized encoder (12 layers, 768 wide, 12 heads, 3072 feed-forward,
  WordPiece-sized embedding), fp16, UNBUSY_ITEMS sequences of 128 tokens per request;
- synthetic: no network; a batch of n requests takes UNBUSY_BASE_MS + UNBUSY_PER_ITEM_MS x n
  (a known service time, so the harness can be checked on a CPU-only tritonserver).

A request carries one INT32 seed and the model makes its inputs on the device, so one client
machine can offer more requests than the server can answer. Outputs are built with
Tensor.from_dlpack: pb_utils.Tensor(name, numpy) failed on the device's numpy 2.
"""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

ITEMS = int(os.environ.get("UNBUSY_ITEMS", "8"))
SEQUENCE = 128
VOCABULARY = 30522


def _resnet(depth):
    def build(torch):
        import torchvision

        net = getattr(torchvision.models, f"resnet{depth}")(weights=None).cuda().half().eval()

        def run(n):
            return net(torch.randn(n * ITEMS, 3, 224, 224, device="cuda", dtype=torch.half))

        return run

    return build


def _bert_base(torch):
    layer = torch.nn.TransformerEncoderLayer(768, 12, 3072, activation="gelu", batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 12, enable_nested_tensor=False).cuda().half().eval()
    embedding = torch.nn.Embedding(VOCABULARY, 768).cuda().half()

    def run(n):
        tokens = torch.randint(0, VOCABULARY, (n * ITEMS, SEQUENCE), device="cuda")
        return encoder(embedding(tokens))[:, 0, :]

    return run


NETWORKS = {"resnet50": _resnet(50), "resnet18": _resnet(18), "bert-base": _bert_base}


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        # The config.pbtxt is the one Unbusy renders, which has no tensors: they are declared here.
        config.add_input({"name": "seed", "data_type": "TYPE_INT32", "dims": [1]})
        config.add_output({"name": "top", "data_type": "TYPE_INT32", "dims": [1]})
        return config

    def initialize(self, args):
        name = args["model_name"]
        if name == "synthetic":
            base, per_item = float(os.environ["UNBUSY_BASE_MS"]), float(os.environ["UNBUSY_PER_ITEM_MS"])
            self.execute_batch = lambda n: time.sleep((base + per_item * n) / 1000)
            self.respond = self._numpy_outputs
            return
        import torch

        self.torch = torch
        network = NETWORKS[name](torch)
        # Every batch size once before ready: the first batch of a new shape pays for kernel
        # selection and allocator growth (stalls of 50-100 ms seen on ResNet-50), which a
        # long-running replica has long paid, so it is start-up time, not serving time.
        max_batch = json.loads(args["model_config"])["max_batch_size"]
        with torch.inference_mode():
            for n in range(1, max_batch + 1):
                network(n)
        torch.cuda.synchronize()

        def execute_batch(n):
            with torch.inference_mode():
                out = network(n).float().view(n, ITEMS, -1).argmax(dim=2)[:, 0]
                return out.to(torch.int32).cpu().contiguous()

        self.execute_batch = execute_batch
        self.respond = self._dlpack_outputs

    def _numpy_outputs(self, n, _):
        return [pb_utils.Tensor("top", np.zeros((1, 1), dtype=np.int32)) for _ in range(n)]

    def _dlpack_outputs(self, n, top):
        dlpack = self.torch.utils.dlpack.to_dlpack
        return [pb_utils.Tensor.from_dlpack("top", dlpack(top[i : i + 1].reshape(1, 1).clone())) for i in range(n)]

    def execute(self, requests):
        n = len(requests)
        outputs = self.respond(n, self.execute_batch(n))
        return [pb_utils.InferenceResponse(output_tensors=[out]) for out in outputs]
