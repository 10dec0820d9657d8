import numpy as np
import pytest

from sources.identifiers import (
    is_synthetic_nhs_number, is_valid_nhs_number, is_valid_uln, is_valid_upn, nhs_check_digits,
    uln_check_digits, upn_check_letter, upn_check_letters,
)


@pytest.mark.parametrize("value", ["9434765919", "943 476 5919", "943-476-5919", "9990000018"])
def test_valid_nhs_numbers(value):
    assert is_valid_nhs_number(value)


@pytest.mark.parametrize("value", ["9434765918", "943476591", "94347659190", "abcdefghij", "", None,
                                   "9990000140", "9990000149"])
def test_invalid_nhs_numbers(value):
    # 999000014 has check 10: no number starting with it is valid, whatever its last digit
    assert not is_valid_nhs_number(value)


def test_synthetic_range_is_999_only():
    assert is_synthetic_nhs_number("9990000018")
    assert not is_synthetic_nhs_number("9434765919")


def test_vectorised_nhs_check_digits_agree_with_the_rule():
    bases = np.random.default_rng(3).integers(100_000_000, 999_999_999, 2000)
    checks = nhs_check_digits(bases)
    for base, check in zip(bases, checks):
        number = f"{base:09d}{max(check, 0)}"
        assert is_valid_nhs_number(number) == (check >= 0)


def test_upn_example_from_codes_md():
    assert is_valid_upn("F886200024017")
    assert upn_check_letter("886200024017") == "F"
    assert not is_valid_upn("G886200024017")


def test_temporary_upn_and_forbidden_letters():
    body = "88620002401A"
    assert is_valid_upn(upn_check_letter(body) + body)
    assert not is_valid_upn("I886200024017")  # I is never a check letter
    assert not is_valid_upn("F88620002401")


def test_vectorised_upn_letters_agree():
    bodies = np.array([f"999{n:09d}" for n in range(0, 5_000_000, 9973)])
    assert list(upn_check_letters(bodies)) == [upn_check_letter(b) for b in bodies]


def test_uln_rule():
    bases = np.arange(100_000_000, 100_000_400)
    checks = uln_check_digits(bases)
    for base, check in zip(bases, checks):
        if check >= 0:
            assert is_valid_uln(f"{base}{check}")
    assert not is_valid_uln("0123456789")
