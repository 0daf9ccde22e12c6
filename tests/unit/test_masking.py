"""ops/masking.py: secret values never survive into printed text."""

from __future__ import annotations

import threading

from ops.masking import MASK, MIN_SECRET_LENGTH, Masker


def test_mask_is_eight_stars_and_min_length_is_four():
    assert MASK == "********"
    assert MIN_SECRET_LENGTH == 4


def test_secret_is_replaced_wherever_it_appears():
    mask = Masker(["hunter22"])
    text = "PGPASSWORD=hunter22 psql\nerror: password 'hunter22' rejected (hunter22hunter22)"
    assert mask(text) == ("PGPASSWORD=******** psql\nerror: password '********' rejected (****************)")


def test_text_without_secrets_is_returned_unchanged():
    mask = Masker(["hunter22"])
    assert mask("nothing to see") == "nothing to see"
    assert mask("") == ""


def test_every_registered_secret_is_masked():
    mask = Masker(["db-pass-1", "s3-key-AKIA"])
    assert mask("postgres://app:db-pass-1@db s3-key-AKIA") == "postgres://app:********@db ********"


def test_a_secret_containing_another_is_masked_whole_whatever_the_order():
    short, long = "abcd", "abcd-efgh-ijkl"
    for order in ([short, long], [long, short]):
        mask = Masker(order)
        # Shortest-first would give '********-efgh-ijkl', leaking the tail.
        assert mask(f"token={long} prefix={short}") == "token=******** prefix=********"


def test_longest_first_holds_for_secrets_added_in_separate_calls():
    mask = Masker(["pass"])
    mask.add("password123")
    assert mask("password123 / pass") == "******** / ********"


def test_too_short_and_empty_values_are_ignored():
    mask = Masker(["abc", "", None, "on"])
    assert mask("abc on off") == "abc on off"


def test_a_value_of_exactly_the_minimum_length_is_masked():
    mask = Masker(["a" * MIN_SECRET_LENGTH])
    assert mask("xaaaax") == "x********x"
    assert Masker(["a" * (MIN_SECRET_LENGTH - 1)])("xaaax") == "xaaax"


def test_add_later_masks_from_then_on():
    mask = Masker()
    assert mask("token tok-98765") == "token tok-98765"
    mask.add("tok-98765")
    assert mask("token tok-98765") == "token ********"


def test_add_accepts_several_values_and_skips_none():
    mask = Masker()
    mask.add(None, "first-secret", "", "second-secret")
    assert mask("first-secret second-secret") == "******** ********"


def test_adding_the_same_secret_twice_changes_nothing():
    mask = Masker(["same-secret"])
    mask.add("same-secret")
    assert mask("a same-secret b") == "a ******** b"


def test_masker_accepts_any_iterable_of_secrets():
    mask = Masker(v for v in ("gen-secret-1", "gen-secret-2"))
    assert mask("gen-secret-1 gen-secret-2") == "******** ********"


def test_concurrent_adds_are_all_kept():
    mask = Masker()
    secrets = [f"secret-{i:04d}" for i in range(200)]

    def add_slice(start: int) -> None:
        for s in secrets[start::4]:
            mask.add(s)

    threads = [threading.Thread(target=add_slice, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mask(" ".join(secrets)) == " ".join([MASK] * len(secrets))
