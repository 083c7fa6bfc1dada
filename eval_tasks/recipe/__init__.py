"""The training recipe for the reference model: CaD-LLaVA (LoRA on LLaVA-1.5) on transformers + peft.

One module per step, in the order data flows: :mod:`.config` (the YAML recipe as a dataclass),
:mod:`.start` (the start point: Vicuna + CLIP + the stage-1 projector as a llava-hf folder),
:mod:`.data` (the training mix, Arrow-backed), :mod:`.template` (the fork's ``conv_vicuna_v1``
prompt as a chat template), :mod:`.collator` (images, prompts and labels), :mod:`.model` (LoRA,
projector, the zero-image hook), :mod:`.trainer` (projector learning rate, modality grouping),
:mod:`.train` (the recipe itself), :mod:`.merge` (adapter -> llava-hf folder) and :mod:`.convert`
(fork-format checkpoints -> llava-hf). ``cadvi train ...`` wraps them; nothing here is an lmms-eval task.
"""
