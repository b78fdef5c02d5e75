"""Text frontend: raw text → pieces → per-language normalisation and G2P → phone ids (+ BERT).

Module map (each reads on its own):
    cut.py         the six cut methods of upstream's UI (``/to_cut``) and the long-text splitter
    symbols.py     the v1 and v2 symbol tables; phones → ids
    zh/            Chinese: normalisation, segmentation + tone sandhi, pinyin G2P (v1 and v2 rules)
    en/            English: normalisation, dictionaries, POS homographs, neural fallback
    ja.py ko.py yue.py
    langsplit.py   language detection and splitting for mixed and auto modes
    cleaner.py     one language piece → (phones, word2ph, norm_text), upstream's ``clean_text``
    preprocess.py  the entry point: text → list of segments the models receive
    bert.py        Chinese BERT features, repeated per phone

Language module contract: ``normalize(text) -> str`` and ``g2p(norm_text) -> G2P`` where G2P
is ``(phones: list[str], word2ph: list[int] | None)``; Chinese and Cantonese fill word2ph.
"""
