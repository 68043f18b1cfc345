"""A tiny Llama-2-style tokenizer: BPE over generated English with byte fallback.

The layout of the vocabulary follows Llama-2 (and therefore llava-1.5): `<unk>`, `<s>`, `</s>` take
ids 0-2, the 256 byte-fallback tokens `<0x00>`..`<0xFF>` take ids 3-258, learned pieces follow, and
the LLaVA additions `<image>` and `<pad>` are appended as added special tokens at the very end.
"""

import json
import random
import string

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaTokenizerFast

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
METASPACE = "\u2581"

BYTE_TOKENS = [f"<0x{byte:02X}>" for byte in range(256)]
# Size of the vocabulary before the two added LLaVA tokens: 510 + <image> + <pad> = 512 ids.
BASE_VOCAB_SIZE = 510

COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "black", "white", "grey", "pink", "brown"]
SHAPES = ["circle", "square", "triangle", "rectangle", "star", "line", "dot", "stripe", "ring", "box"]
SIZES = ["small", "large", "tiny", "big", "thin", "wide"]
PLACES = ["left", "right", "top", "bottom", "middle", "corner", "centre"]
SENTENCES = [
    "What is in this image?",
    "What is shown in the picture?",
    "Describe the image.",
    "Describe this image in detail.",
    "Please describe what you see.",
    "The image shows a {size} {colour} {shape}.",
    "There is a {colour} {shape} next to a {colour2} {shape2}.",
    "What colour is the {shape}? It is {colour}.",
    "The {shape} is {colour} and the background is {colour2}.",
    "A {size} {colour} {shape} sits in the {place} of the image.",
    "How many {shape}s are there? I can see {count}.",
    "What shape is the {colour} object? It looks like a {shape}.",
    "In the {place} there is a {colour2} {shape2}, and a {shape} on the {place2}.",
    "Describe the colours and shapes you can see.",
    "The picture has {count} {colour} {shape}s on a {colour2} background.",
    "It's a simple image with a {colour} {shape}, a {colour2} {shape2} and some stripes.",
    "You are a helpful assistant that describes images.",
    "Answer the question about the image: which {shape} is {colour}?",
]


def training_corpus(seed: int, lines: int = 4000) -> list[str]:
    """Deterministic English sentences about colours and shapes in images, some as chat turns."""
    rng = random.Random(seed)

    def sentence() -> str:
        return rng.choice(SENTENCES).format(
            colour=rng.choice(COLOURS),
            colour2=rng.choice(COLOURS),
            shape=rng.choice(SHAPES),
            shape2=rng.choice(SHAPES),
            size=rng.choice(SIZES),
            place=rng.choice(PLACES),
            place2=rng.choice(PLACES),
            count=rng.randint(0, 120),
        )

    corpus = []
    for index in range(lines):
        # Every fourth line is a turn pair in the USER/ASSISTANT style of the LLaVA prompt.
        corpus.append(f"USER: {sentence()} ASSISTANT: {sentence()}" if index % 4 == 0 else sentence())
    return corpus


def learn_pieces(corpus: list[str], base_vocab_size: int = BASE_VOCAB_SIZE) -> tuple[list[str], list[tuple[str, str]]]:
    """Train BPE pieces and merges the way SentencePiece segments Llama text.

    Training splits on spaces (kept as a leading `▁`), punctuation and single digits so that no learned
    piece crosses those boundaries; at encode time the Llama pipeline does not split, and BPE then can
    only rebuild pieces that never cross them either. The alphabet is printable ASCII: every other
    character is encoded through the byte-fallback tokens, as in Llama.
    """
    trainer_model = Tokenizer(models.BPE(unk_token=UNK))
    trainer_model.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    alphabet = sorted(set(string.printable) - set(string.whitespace)) + [METASPACE]
    learned_size = base_vocab_size - len(BYTE_TOKENS) - 3
    trainer = trainers.BpeTrainer(
        vocab_size=learned_size,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        special_tokens=[],
        show_progress=False,
    )
    trainer_model.train_from_iterator(corpus, trainer)
    vocab = trainer_model.get_vocab()
    if len(vocab) != learned_size:
        raise RuntimeError(f"BPE training produced {len(vocab)} pieces, expected {learned_size}")
    pieces = sorted(vocab, key=vocab.__getitem__)
    merges = [tuple(merge) for merge in json.loads(trainer_model.to_str())["model"]["merges"]]
    return pieces, merges


def build_tokenizer(seed: int) -> LlamaTokenizerFast:
    """The fixture tokenizer, wrapped by transformers so that its save_pretrained writes the files."""
    return build_llama_tokenizer(training_corpus(seed))


def build_llama_tokenizer(corpus: list[str], base_vocab_size: int = BASE_VOCAB_SIZE) -> LlamaTokenizerFast:
    """A Llama-2-layout tokenizer whose pieces are learned from `corpus`; `<image>` and `<pad>` follow
    the `base_vocab_size` ids."""
    pieces, merges = learn_pieces(corpus, base_vocab_size)
    ordered = [UNK, BOS, EOS] + BYTE_TOKENS + pieces
    if len(set(ordered)) != len(ordered):
        raise RuntimeError("learned pieces collide with special or byte tokens")
    vocab = {token: index for index, token in enumerate(ordered)}

    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK, fuse_unk=True, byte_fallback=True))
    # The pipeline transformers 5 builds for LlamaTokenizer (and rebuilds when it loads a Llama
    # tokenizer.json): no normaliser, Metaspace that prefixes `▁` only at the start of the text.
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="first", split=False)
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace(METASPACE, " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),
        ]
    )
    tokenizer = LlamaTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        add_bos_token=True,
        add_eos_token=False,
    )
    tokenizer.add_tokens(
        [
            AddedToken(IMAGE_TOKEN, special=True, normalized=False),
            AddedToken(PAD_TOKEN, special=True, normalized=False),
        ],
        special_tokens=True,
    )
    tokenizer.pad_token = PAD_TOKEN
    expected_ids = {UNK: 0, BOS: 1, EOS: 2, IMAGE_TOKEN: base_vocab_size, PAD_TOKEN: base_vocab_size + 1}
    for token, token_id in expected_ids.items():
        if tokenizer.convert_tokens_to_ids(token) != token_id:
            raise RuntimeError(f"{token} has id {tokenizer.convert_tokens_to_ids(token)}, expected {token_id}")
    return tokenizer
