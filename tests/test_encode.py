"""Text encoding: repeated queries are encoded once and come back in order."""

import numpy as np

from traffic_retrieval.retrieval.encode import encode_texts
from traffic_retrieval.retrieval.models import ModelSettings, load_model


def test_repeated_texts_encode_once_in_order(monkeypatch):
    loaded = load_model(ModelSettings("TR-ViT-Tiny", None))
    seen = []
    encode = loaded.model.encode_text
    monkeypatch.setattr(loaded.model, "encode_text", lambda tokens, **kw: seen.append(len(tokens)) or encode(tokens, **kw))
    texts = ["This is a red Audi SUV.", "A male pedestrian.", "This is a red Audi SUV."]
    emb = encode_texts(loaded, texts)
    assert seen == [2]
    assert emb.shape == (3, 128)
    np.testing.assert_array_equal(emb[0], emb[2])
    np.testing.assert_allclose(emb[1], encode_texts(loaded, ["A male pedestrian."])[0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
