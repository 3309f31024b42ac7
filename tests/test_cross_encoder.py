"""The cross-encoder: its tokens from any OpenCLIP model (ViT-bigG-14 on the meta device), that it can learn
a match a pooled vector cannot see, hard negatives that contradict, training and re-scoring end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import open_clip
import pytest
import torch

from traffic_retrieval.core.attribute_groups import MISSING
from traffic_retrieval.core.fileio import UserError
from traffic_retrieval.retrieval.cross_encoder import (CrossEncoding, Matcher, MatcherShape, cross_rescore,
                                                       image_tokens)
from traffic_retrieval.retrieval.models import LoadedModel
from traffic_retrieval.training.matching import MatcherTraining, contradicts, hard_negatives, train_matcher


def test_tokens_and_the_matcher_of_vit_bigg_on_the_meta_device():
    with torch.device("meta"):
        model = open_clip.create_model("ViT-bigG-14", device="meta")
        loaded = LoadedModel("ViT-bigG-14", None, model, None, open_clip.get_tokenizer("ViT-bigG-14"), None)
        image = image_tokens(loaded, torch.empty(2, 3, 224, 224))
        assert image.shape == (2, 256, 1664)  # 16 x 16 patches of its last block, 1,664 wide
        tokens = loaded.tokenizer(["This is a grey Chery Sedan.", "A female pedestrian"]).to("meta")
        out = model.forward_intermediates(text=tokens, text_indices=1, normalize_intermediates=True,
                                          intermediates_only=True)["text_intermediates"][0]
        assert out.shape == (2, 77, 1280)
        matcher = Matcher(1664, 1280, 256, MatcherShape(width=256))
        assert matcher(image, out[:, :32], torch.zeros(2, 32, dtype=torch.bool)).shape == (2,)


def test_it_learns_a_match_that_lives_in_one_cell():
    """A colour in one of 16 cells of the image and named by one text token: matching needs the pair."""
    rng = torch.Generator().manual_seed(0)
    n, cells, dim = 2048, 16, 12

    def draw(count):
        colour = torch.randint(0, dim, (count,), generator=rng)
        image = torch.randn(count, cells, dim, generator=rng) * 0.1
        image[torch.arange(count), torch.randint(0, cells, (count,), generator=rng), colour] += 1.0
        named = torch.where(torch.rand(count, generator=rng) < 0.5, colour, torch.randint(0, dim, (count,), generator=rng))
        text = torch.zeros(count, 4, dim)
        text[torch.arange(count), 1, named] = 1.0
        return image, text, (named == colour).float()

    torch.manual_seed(0)
    matcher = Matcher(dim, dim, cells, MatcherShape(width=32, layers=1))
    opt = torch.optim.Adam(matcher.parameters(), lr=3e-3)
    pad = torch.zeros(n, 4, dtype=torch.bool)
    image, text, label = draw(n)
    for _ in range(300):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(matcher(image, text, pad), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    image, text, label = draw(512)
    with torch.no_grad():
        accuracy = ((matcher(image, text, pad[:512]) > 0).float() == label).float().mean()
    assert accuracy > 0.9


def test_hard_negatives_contradict_and_come_from_the_top():
    a = np.array([[0, 2, MISSING], [1, MISSING, 3]])
    b = np.array([[0, 2, 5], [0, 1, MISSING], [1, 4, 3], [1, MISSING, MISSING]])
    assert contradicts(a, b).tolist() == [[False, True, True, True], [True, True, False, False]]
    sims = np.array([[0.9, 0.8, 0.1, 0.7], [0.5, 0.9, 0.2, 0.1]])
    # keys as embeddings whose dot products with the one-hot queries are the rows of sims
    picked = hard_negatives(np.eye(2), a, sims.T, b, k=1, pool=1, rng=np.random.default_rng(0))
    assert picked.tolist() == [[1], [1]]  # the best-scoring key that contradicts


def test_a_matcher_trains_on_a_drawn_split_and_re_scores_candidates(drawn_dataset, tmp_path):
    from traffic_retrieval.core.layout import find_vocabulary, gallery_images
    from traffic_retrieval.retrieval.encode import EncodeSettings
    from traffic_retrieval.retrieval.gallery import encode_gallery
    from traffic_retrieval.retrieval.models import ModelSettings, load_model

    data, checkpoint = drawn_dataset("matcher", 7, train=40, val=0, test=30)
    loaded = load_model(ModelSettings(None, str(checkpoint)))
    encode = EncodeSettings(workers=0, progress=False)
    matcher = train_matcher(loaded, data, find_vocabulary(data), encode, MatcherShape(width=16, layers=1),
                            MatcherTraining(epochs=1, batch_size=64))
    back = Matcher.load(matcher.save(tmp_path / "m.safetensors"))
    assert back.meta["model"] == loaded.name and back.shape == MatcherShape(width=16, layers=1)
    gallery = encode_gallery(loaded, gallery_images(data / "test" / "test_images"), encode)
    indices = np.tile(np.arange(12), (3, 1))
    scores = np.linspace(1, 0, 12)[None].repeat(3, 0)
    queries = ["This is a red Audi SUV.", "A white Truck.", "This is a red Audi SUV."]
    ranked, fused = cross_rescore(loaded, gallery, queries, indices, scores, CrossEncoding(back, candidates=8, weight=1.0))
    assert (np.sort(ranked[:, :8], 1) == np.arange(8)).all() and (ranked[:, 8:] == indices[:, 8:]).all()
    assert (ranked[0] == ranked[2]).all() and (np.diff(fused[:, :8], axis=1) <= 1e-6).all()
    assert len(gallery.tokens) == 8  # each candidate read once
    # a subset of the split trains too; a token table over the memory budget stops at its first batch
    assert train_matcher(loaded, data, find_vocabulary(data), encode, MatcherShape(width=16, layers=1),
                         MatcherTraining(epochs=1, images=10)).shape.width == 16
    with pytest.raises(UserError, match="40 images x 2 views need .* over the memory budget"):
        train_matcher(loaded, data, find_vocabulary(data), replace(encode, memory_budget=1000), MatcherShape(),
                      MatcherTraining(epochs=1))
    with pytest.raises(Exception, match="trained on TR-ViT-Tiny tokens"):
        back.meta["model"] = "TR-ViT-Tiny"
        cross_rescore(_relabelled(loaded), gallery, queries, indices, scores, CrossEncoding(back))


def _relabelled(loaded):
    return replace(loaded, name="TR-ResNet-Tiny")
