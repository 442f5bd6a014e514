import pytest

from kdkeras.registry import Registry


def test_register_get_and_decorator():
    r = Registry("student")
    r.register("a", 1)

    @r.register("b")
    def b():
        return 2

    assert r.get("a") == 1 and r.get("b")() == 2
    assert r.names() == ["a", "b"] and "a" in r and len(r) == 2 and list(r) == ["a", "b"]


def test_unknown_name_lists_known_and_nearest():
    r = Registry("quantization")
    for name in ("int8", "float16", "dynamic"):
        r.register(name, name)
    with pytest.raises(ValueError, match=r"^Unknown quantization 'int9'. Did you mean 'int8'\? Known: dynamic, float16, int8$"):
        r.get("int9")
    with pytest.raises(ValueError, match=r"^Unknown quantization 'zzz'. Known: dynamic, float16, int8$"):
        r.get("zzz")


def test_duplicate_registration_fails():
    r = Registry("loss")
    r.register("kl", 1)
    with pytest.raises(ValueError, match="loss 'kl' is already registered"):
        r.register("kl", 2)


def test_unregister_returns_the_object_and_refuses_unknown_names():
    reg = Registry("thing")
    reg.register("a", 1)
    assert reg.unregister("a") == 1 and "a" not in reg
    with pytest.raises(ValueError, match="Unknown thing 'a'"):
        reg.unregister("a")
