"""Knowledge-distillation fine-tuning (spec §7): the pruned network learns from the unpruned one.

Loss = α·CE(student, y) + (1 − α)·T²·KL(softmax(teacher/T) ‖ softmax(student/T)), batch mean
(Hinton et al. 2015; the T² keeps the soft term's gradients on the scale of the hard one).
The teacher is a frozen copy of the network the run started from, evaluated in inference
mode (eval-mode BN, no autograd), in bf16 on CUDA. Its outputs are computed once per
training batch — never for validation, never twice for one batch — and, when fine-tuning
does not augment, once per training image for the whole run (the images never change, so
neither do the teacher's outputs). :meth:`Teacher.images` counts its forward passes for the
accounting.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from squeezr.blocknet import BlockNet
from squeezr.dbx.errors import UserError
from squeezr.tasks import ImageClassification, Task


def distill_loss(
    student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, alpha: float, temperature: float
) -> torch.Tensor:
    """α·CE + (1 − α)·T²·KL(teacher ‖ student) on logits, averaged over the batch."""
    hard = F.cross_entropy(student, y)
    if alpha == 1:
        return hard
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1),
        F.log_softmax(teacher.float() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * hard + (1 - alpha) * temperature**2 * soft


class Teacher:
    """A frozen copy of ``model`` and the distillation loss fit uses (``loss=teacher.loss``).

    ``cache=True`` (fine-tuning without augmentation) keeps the teacher's logits per training
    image, computed on first use from ``split`` in ``batch_size`` chunks.
    """

    def __init__(
        self,
        model: BlockNet,
        alpha: float,
        temperature: float,
        device: torch.device,
        *,
        cache: bool = False,
        split=None,
        mean=None,
        std=None,
        batch_size: int = 1000,
        task: Task | None = None,
    ) -> None:
        self.model = copy.deepcopy(model).to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.alpha, self.temperature, self.device = alpha, temperature, device
        self.cache_wanted, self.split = cache, split
        if task is None and mean is not None:
            task = ImageClassification(mean, std)
        if cache and task is None:  # the inputs are prepared here only to fill the cache
            raise UserError("a teacher that caches its outputs needs the data's task or mean/std")
        self.task = task
        self.batch_size = batch_size
        self.cached: torch.Tensor | None = None
        self.images = 0

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return self.model(x).float()

    def _all_logits(self) -> torch.Tensor:
        if self.cached is None:
            parts = []
            for start in range(0, len(self.split.y), self.batch_size):
                x = self.split.x[start : start + self.batch_size]
                parts.append(self._forward(self.task.prepare(x, self.device)))
            self.cached = torch.cat(parts)
        return self.cached

    def logits(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        """The teacher's logits for the batch ``x`` (training images ``idx``), as a normal
        tensor (an inference-mode one cannot enter the student's autograd graph)."""
        if self.cache_wanted and idx is not None:
            return self._all_logits()[idx.to(self.device)].clone()
        return self._forward(x).clone()

    def loss(self, out, y, x, idx) -> torch.Tensor:
        """fit's ``loss`` hook: :func:`distill_loss` against this teacher."""
        return distill_loss(out, self.logits(x, idx), y, self.alpha, self.temperature)

    def forward_images(self, epochs_run: int, images_per_epoch: int, first: bool) -> int:
        """Teacher forward passes a loop of ``epochs_run`` epochs costs, by rule (so that a
        resumed run accounts exactly as an uninterrupted one): every training image once
        per epoch, or, cached, the training set once for the whole run (``first``: no loop
        has used the teacher yet)."""
        if not self.cache_wanted:
            return epochs_run * images_per_epoch
        return images_per_epoch if first and epochs_run else 0
