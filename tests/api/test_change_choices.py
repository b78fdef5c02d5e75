from app.engine.registry import natural_key


def put(root, rel):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04")


def test_lists_names_as_upstream_shows_them(client, weights_root):
    put(weights_root, "SoVITS_weights_v2/井芹仁菜V3_e100_s1800.pth")
    put(weights_root, "SoVITS_weights_v2/a_e10.pth")
    put(weights_root, "SoVITS_weights_v2/a_e9.pth")
    put(weights_root, "GPT_SoVITS/pretrained_models/s1v3.ckpt")
    put(weights_root, "GPT_weights_v2/b-e15.ckpt")
    body = client.post("/change_choices").json()
    assert body["sovits"] == ["SoVITS_weights_v2/a_e9.pth", "SoVITS_weights_v2/a_e10.pth", "SoVITS_weights_v2/井芹仁菜V3_e100_s1800.pth"]
    assert body["gpt"] == sorted(["GPT_SoVITS/pretrained_models/s1v3.ckpt", "GPT_weights_v2/b-e15.ckpt"], key=natural_key)


def test_rescans_on_every_call(client, weights_root):
    assert client.post("/change_choices").json() == {"sovits": [], "gpt": []}
    put(weights_root, "GPT_weights/new-e1.ckpt")
    assert client.post("/change_choices").json()["gpt"] == ["GPT_weights/new-e1.ckpt"]


def test_get_is_not_allowed(client):
    assert client.get("/change_choices").status_code == 405
