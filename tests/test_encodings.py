"""Text files in the common legacy encodings and in UTF-16 (with and without a BOM) come back
exactly through `read_file`, or are skipped as undecodable: never indexed garbled (issue 24:
latin-1 French came back through cp1257 as "signé ą Genčve par Anaļs").

Each case is real text in the language its encoding serves, a few sentences long where the
encoding needs context to be told apart, and one line long for the Western encodings,
since users have such files too.
"""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest

from spanqa.index.records import Document, Skipped
from spanqa.indexer import decoding
from spanqa.indexer.formats import read_file

FRENCH = ("Le contrat a été signé à Genève par Anaïs Dupont le 3 mars. La façade du bâtiment "
          "sera rénovée l'année prochaine, après l'hiver.\nLe garçon a reçu un cadeau de sa "
          "cousine aînée pour Noël.\n")
GERMAN = ("Die Straße vor dem Rathaus wird im Frühjahr erneuert. Größere Fahrzeuge müssen über "
          "die Brücke im Süden ausweichen.\nDie Bürger können ihre Meinung bis Ende März "
          "äußern.\n")
SPANISH = ("El niño comió una piña en la montaña. ¿Dónde está la estación? ¡Allí, junto al "
           "café!\nLa señora Muñoz llegó a España el año pasado.\n")
# cp1252 only: € “ ” ‘ ’ – — … œ „ are not in latin-1
FRENCH_1252 = ("Le devis s’élève à 1 200 € hors taxes. « C’est trop cher », a dit Anaïs – mais "
               "le maître d’œuvre a répondu : “c’est le prix”.\nLa façade sera terminée en "
               "été…\n")
GERMAN_1252 = ("Der Preis beträgt 45 € – inklusive Mehrwertsteuer. „Das ist günstig“, sagte "
               "Jürgen, „für so große Qualität.“\nDie Lieferung erfolgt im Oktober.\n")
SPANISH_1252 = ("El billete cuesta 30 € — ida y vuelta. “Es barato”, dijo la señora Núñez, "
                "¿verdad?\nLa excursión empieza a las ocho y termina en el museo.\n")
# The mix that cp1250 used to win (found by the issue-24 review): "à" read as "ŕ"
FRENCH_MIXED_1252 = ("Le garçon a reçu un cadeau de sa sœur aînée. Le contrat a été signé à "
                     "Genève par Anaïs le 3 mars. Signé à Genève par Anaïs … Façade\n")
POLISH = ("Zażółć gęślą jaźń. W Łodzi powstaje nowa biblioteka, która będzie otwarta dla "
          "wszystkich mieszkańców.\nPrace budowlane potrwają do końca przyszłego roku.\n")
CZECH = ("Příliš žluťoučký kůň úpěl ďábelské ódy. Městská knihovna v Brně bude příští měsíc "
         "uzavřena kvůli opravě střechy.\nČtenáři si mohou knihy vrátit na poště.\n")
RUSSIAN = ("Съешь же ещё этих мягких французских булок, да выпей чаю. Городская библиотека "
           "закроется на ремонт в следующем месяце.\nЧитатели могут вернуть книги на почте.\n")
JAPANESE = ("吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。何でも薄暗い"
            "じめじめした所でニャーニャー泣いていた事だけは記憶している。\n")
CHINESE = ("中华人民共和国成立于一九四九年。北京是中国的首都，也是全国的政治和文化中心。\n"
           "图书馆下个月将因屋顶维修而关闭。\n")

LEGACY = [
    pytest.param("latin-1", FRENCH, id="latin-1-french"),
    pytest.param("latin-1", GERMAN, id="latin-1-german"),
    pytest.param("latin-1", SPANISH, id="latin-1-spanish"),
    pytest.param("latin-1", "Signé à Genève par Anaïs, Façade.\n", id="latin-1-short-french"),
    # one-liners that charset-normalizer read as cp1250 ("signé ŕ Genčve par Anaďs")
    pytest.param("latin-1", "signé à Genève par Anaïs devant la Façade est belle.",
                 id="latin-1-short-french-issue"),
    pytest.param("latin-1", "Le document fut signé à Genève par Anaïs pour la Façade rénovée.",
                 id="latin-1-short-french-issue-2"),
    pytest.param("latin-1", "Grüße aus Köln", id="latin-1-short-german"),
    pytest.param("latin-1", "¿Qué tal, señor Muñoz?", id="latin-1-short-spanish"),
    pytest.param("cp1252", FRENCH_1252, id="cp1252-french"),
    pytest.param("cp1252", GERMAN_1252, id="cp1252-german"),
    pytest.param("cp1252", SPANISH_1252, id="cp1252-spanish"),
    pytest.param("cp1252", FRENCH_MIXED_1252, id="cp1252-french-mixed"),
    pytest.param("cp1252", "Prix : 5 € – “neuf”.\n", id="cp1252-short-french"),
    pytest.param("cp1252", "Tschüß – bis bald!", id="cp1252-short-german"),
    pytest.param("cp1250", POLISH, id="cp1250-polish"),
    pytest.param("cp1250", CZECH, id="cp1250-czech"),
    pytest.param("cp1251", RUSSIAN, id="cp1251-russian"),
    pytest.param("shift_jis", JAPANESE, id="shift_jis-japanese"),
    pytest.param("gb2312", CHINESE, id="gb2312-chinese"),
]

UTF16 = [
    pytest.param(codecs.BOM_UTF16_LE, "utf-16-le", FRENCH_1252 + RUSSIAN, id="bom-le"),
    pytest.param(codecs.BOM_UTF16_BE, "utf-16-be", GERMAN + JAPANESE, id="bom-be"),
    pytest.param(b"", "utf-16-le", FRENCH_1252, id="no-bom-le-french"),
    pytest.param(b"", "utf-16-be", FRENCH_1252, id="no-bom-be-french"),
    pytest.param(b"", "utf-16-le", RUSSIAN, id="no-bom-le-russian"),
    pytest.param(b"", "utf-16-be", POLISH, id="no-bom-be-polish"),
    pytest.param(b"", "utf-16-le", JAPANESE, id="no-bom-le-japanese"),
    pytest.param(b"", "utf-16-be", CHINESE, id="no-bom-be-chinese"),
]


def read_back(path: Path, data: bytes) -> Document | Skipped:
    path.write_bytes(data)
    results = read_file(path)
    assert len(results) == 1, results
    return results[0]


@pytest.mark.parametrize(("encoding", "text"), LEGACY)
def test_legacy_encoded_text_comes_back_exactly(tmp_path, encoding, text):
    data = text.encode(encoding)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # so that the case goes through the guess, not through UTF-8
    result = read_back(tmp_path / "legacy.txt", data)
    assert isinstance(result, Document), result
    assert result.text == text


@pytest.mark.parametrize(("bom", "encoding", "text"), UTF16)
def test_utf16_with_and_without_bom_comes_back_exactly(tmp_path, bom, encoding, text):
    result = read_back(tmp_path / "wide.txt", bom + text.encode(encoding))
    assert isinstance(result, Document), result
    assert result.text == text


def test_bytes_no_encoding_reads_as_text_are_skipped_as_undecodable(tmp_path):
    """High bytes at random between spaces: every single-byte reading scatters the letters of
    many alphabets, so the file is skipped with its reason instead of indexed as garbage."""
    rng = random.Random(24)
    words = [bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(3, 9)))
             for _ in range(200)]
    result = read_back(tmp_path / "noise.txt", b" ".join(words))
    assert isinstance(result, Skipped), result
    assert result.reason.startswith("undecodable text")


def test_utf16_shaped_binary_is_still_binary(tmp_path):
    """NUL bytes on one side of the pairs alone do not make UTF-16: the reading must be text."""
    rng = random.Random(7)
    data = bytes(b for _ in range(2000) for b in (rng.randrange(1, 256), 0))
    result = read_back(tmp_path / "samples.txt", data)
    assert isinstance(result, Skipped) and result.reason == "binary file", result


# English with a cp1252 character here and there: the slow case for judging whole files,
# since scoring a reading stops only after 20,000 non-ASCII characters
ENGLISH_1252 = ("The committee met on Tuesday to review the budget for the coming year. Most "
                "of the discussion concerned the library, whose roof has leaked since the "
                "storms of last winter, and the cost of repairing it before the autumn term "
                "begins. The treasurer’s estimate came to €48,000 — “more than we hoped”, "
                "she said.\n") * 4


def large_cp1252_text(size: int) -> str:
    """`size` characters or so of Western European prose in cp1252 (€, curly quotes, dashes)
    with a different number in every paragraph, so that no stretch of it repeats."""
    paragraphs: list[str] = []
    total = number = 0
    while total < size:
        for body in (ENGLISH_1252, FRENCH_1252, ENGLISH_1252, GERMAN_1252, SPANISH_1252):
            paragraphs.append(f"§ {number}. {body}")
            total += len(paragraphs[-1])
            number += 1
    return "".join(paragraphs)


def test_a_large_cp1252_file_is_judged_on_a_sample_and_decoded_exactly(tmp_path):
    """Judging every candidate reading of the whole file took 2-4 s per 5 MB, so large
    files ran out of parse time; a sample decides now, and the whole file is decoded once
    with the winner, exactly."""
    text = large_cp1252_text(20_000_000)
    data = text.encode("cp1252")
    assert len(data) >= 20_000_000
    assert decoding._sample(data) != [data]  # the sample path, not the whole file
    result = read_back(tmp_path / "large.txt", data)
    assert isinstance(result, Document), result
    assert result.text == text


def test_a_winner_that_fails_outside_the_sample_gives_way_to_the_next(tmp_path):
    """A byte cp1252 has no character for (0x81), where the sample does not look: cp1252
    wins on the sample but cannot decode the file, so the next candidate that decodes all
    of it strictly gives the text."""
    text = large_cp1252_text(3_000_000)
    data = text.encode("cp1252")
    middle = len(data) // 6  # between the first and the second stretch of the sample
    assert all(b"\x81" not in piece for piece in decoding._sample(data))
    data = data[:middle] + b"\x81" + data[middle:]
    assert all(b"\x81" not in piece for piece in decoding._sample(data))
    with pytest.raises(UnicodeDecodeError):
        data.decode("cp1252")
    guess = decoding.guess_legacy(data)
    assert guess is not None
    decoded, encoding = guess
    assert encoding != "cp1252" and decoded == data.decode(encoding)
