"""Declarations: mistakes fail where they are written, and the forms users reach for work."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import cachewire
from cachewire import Rule, cached, changed, configure, get_settings, task
from cachewire.cache import InMemoryCacheAdapter
from cachewire.errors import ConfigurationError
from cachewire.tasks import TaskRegistry, default_registry

# ------------------------------------------------------------------ settings


def test_configure_with_an_unknown_default_dispatcher_fails_listing_the_known_ones() -> None:
    before = get_settings()
    with pytest.raises(ConfigurationError, match=r"'nope'.*known: .*inline.*threadpool"):
        configure(default_dispatcher="nope")
    assert get_settings() is before  # nothing changed


def test_configure_accepts_registered_dispatchers_and_leaves_others_unchecked() -> None:
    configure(default_dispatcher="threadpool")
    assert get_settings().default_dispatcher == "threadpool"
    configure(dispatcher_raise_exception=True)  # the default dispatcher is not checked again
    assert get_settings().dispatcher_raise_exception is True


# ------------------------------------------------------------------ @task


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry()


def test_an_unknown_task_option_is_a_configuration_error(registry: TaskRegistry) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown @task option\(s\) \['retries'\]"):
        task(registry=registry, retries=3)  # type: ignore[call-overload]


def test_an_unknown_task_dispatcher_fails_at_decoration(registry: TaskRegistry) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown dispatcher 'nope'; known: .*inline"):

        @task(registry=registry, name="job", dispatcher="nope")
        def job() -> None: ...


def test_a_timeout_the_dispatcher_cannot_enforce_fails_at_decoration(
    registry: TaskRegistry,
) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot be enforced by the 'threadpool'"):

        @task(registry=registry, name="job", dispatcher="threadpool", timeout=5)
        def job() -> None: ...

    @task(registry=registry, name="fine", dispatcher="asyncio", timeout=5)
    async def fine() -> None: ...


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("cw_reload_")]:
        del sys.modules[name]


def write_module(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    importlib.invalidate_caches()


def test_reloading_a_module_reregisters_its_tasks(module_dir: Path) -> None:
    source = """
        from cachewire import task

        @task
        def send_mail(to):
            return "v{version}:" + to
    """
    write_module(module_dir, "cw_reload_tasks", source.format(version=1))
    module = importlib.import_module("cw_reload_tasks")
    try:
        assert default_registry.get("cw_reload_tasks.send_mail")("a") == "v1:a"
        write_module(module_dir, "cw_reload_tasks", source.format(version=2))
        module = importlib.reload(module)
        assert default_registry.get("cw_reload_tasks.send_mail") is module.send_mail
        assert default_registry.get("cw_reload_tasks.send_mail")("a") == "v2:a"
    finally:
        default_registry.unregister("cw_reload_tasks.send_mail")


def test_another_function_under_a_taken_task_name_is_still_an_error(
    registry: TaskRegistry,
) -> None:
    for _ in range(2):  # the same declaration run again (a notebook cell): replaces

        @task(registry=registry, name="jobs.one")
        def one() -> int:
            return 1

    assert registry.get("jobs.one") is one

    with pytest.raises(ConfigurationError, match="already registered"):

        @task(registry=registry, name="jobs.one")
        def other() -> int:
            return 2


def test_two_lambdas_cannot_share_a_task_name(registry: TaskRegistry) -> None:
    task(name="same", registry=registry)(lambda: 1)
    with pytest.raises(ConfigurationError, match="already registered"):
        task(name="same", registry=registry)(lambda: 2)


# ------------------------------------------------------------------ @cached


squares: list[int] = []


@cached
def module_level_square(x: int) -> int:
    squares.append(x)
    return x * x


def test_bare_cached_works() -> None:
    assert module_level_square.cache_id == f"{__name__}.module_level_square"
    assert module_level_square(3) == 9
    assert module_level_square(3) == 9
    assert squares == [3]
    module_level_square.invalidate(x=3)
    assert module_level_square(3) == 9
    assert squares == [3, 3]


def test_bare_cached_on_a_local_function_asks_for_a_name() -> None:
    with pytest.raises(ConfigurationError, match="needs name="):

        @cached
        def local(x: int) -> int:
            return x


def test_cached_with_something_that_is_not_an_adapter_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="needs a cache adapter"):
        cached(42)  # type: ignore[call-overload]


class Prices:
    def __init__(self, currency: str, calls: list[tuple[str, int]]) -> None:
        self.currency = currency
        self.calls = calls

    @cached(cache=InMemoryCacheAdapter(), name="prices.shared", partition=("product_id",))
    def shared(self, product_id: int) -> str:
        self.calls.append((self.currency, product_id))
        return f"{product_id} in {self.currency}"

    @cached(
        cache=InMemoryCacheAdapter(),
        name="prices.per_currency",
        self_key=lambda prices: prices.currency,
    )
    def per_currency(self, product_id: int) -> str:
        self.calls.append((self.currency, product_id))
        return f"{product_id} in {self.currency}"

    @cached(cache=InMemoryCacheAdapter(), name="prices.async")
    async def aprice(self, product_id: int) -> str:
        self.calls.append((self.currency, product_id))
        return f"{product_id} in {self.currency}"


def test_cached_method_binds_the_instance_and_keys_without_it() -> None:
    calls: list[tuple[str, int]] = []
    eur, usd = Prices("EUR", calls), Prices("USD", calls)
    assert eur.shared(1) == "1 in EUR"
    assert usd.shared(1) == "1 in EUR"  # one entry for every instance: self is not in the key
    assert calls == [("EUR", 1)]
    assert Prices.shared.parameters == ("product_id",)
    assert eur.shared.key_for(1) == usd.shared.key_for(1)
    usd.shared.invalidate(product_id=1)
    assert usd.shared(1) == "1 in USD"
    assert eur.shared.uncached(2) == "2 in EUR"


def test_cached_method_with_self_key_keys_on_that_value() -> None:
    calls: list[tuple[str, int]] = []
    eur, usd, eur2 = Prices("EUR", calls), Prices("USD", calls), Prices("EUR", calls)
    assert eur.per_currency(1) == "1 in EUR"
    assert usd.per_currency(1) == "1 in USD"
    assert eur2.per_currency(1) == "1 in EUR"
    assert calls == [("EUR", 1), ("USD", 1)]
    assert Prices.per_currency.parameters == ("self", "product_id")
    Prices.per_currency.invalidate(self="USD", product_id=1)
    usd.per_currency(1)
    eur.per_currency(1)
    assert calls == [("EUR", 1), ("USD", 1), ("USD", 1)]


async def test_async_cached_method() -> None:
    calls: list[tuple[str, int]] = []
    eur = Prices("EUR", calls)
    assert await eur.aprice(1) == "1 in EUR"
    assert await Prices("USD", calls).aprice(1) == "1 in EUR"
    assert calls == [("EUR", 1)]


def test_a_rule_maps_a_cached_method_by_its_other_parameters() -> None:
    class Catalog:
        @cached(
            cache=InMemoryCacheAdapter(),
            name="catalog.product",
            invalidates_on=[Rule(model="shop.Product", field_mapping={"product_id": "id"})],
        )
        def product(self, product_id: int) -> int:
            computed.append(product_id)
            return product_id

    computed: list[int] = []
    catalog = Catalog()
    catalog.product(1)
    catalog.product(1)
    changed("shop.Product", {"id": 1})
    catalog.product(1)
    assert computed == [1, 1]


class Rates:
    calls: list[tuple[str, str]] = []

    @classmethod
    @cached(cache=InMemoryCacheAdapter(), name="rates.for_currency")
    def for_currency(cls, currency: str) -> str:
        cls.calls.append((cls.__name__, currency))
        return f"{cls.__name__}:{currency}"

    @staticmethod
    @cached(cache=InMemoryCacheAdapter(), name="rates.convert")
    def convert(amount: int) -> int:
        return amount * 2


def test_cached_class_and_static_methods() -> None:
    assert Rates.for_currency("EUR") == "Rates:EUR"
    assert Rates().for_currency("EUR") == "Rates:EUR"
    assert Rates.calls == [("Rates", "EUR")]
    Rates.for_currency.invalidate(currency="EUR")
    Rates.for_currency("EUR")
    assert Rates.calls == [("Rates", "EUR"), ("Rates", "EUR")]
    assert Rates.convert(2) == Rates().convert(2) == 4
    assert Rates.convert.receiver is None


def test_self_key_on_a_plain_function_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="not a method"):

        @cached(name="plain.f", self_key=lambda s: s)
        def f(self: int) -> int:
            return self


def test_a_function_inside_a_function_is_not_mistaken_for_a_method() -> None:
    @cached(name="local.self_named")
    def f(self: int) -> int:
        return self * 2

    assert f.receiver is None
    assert f(3) == 6


def test_cachewire_exports_the_new_error() -> None:
    assert issubclass(cachewire.errors.RulePathError, ConfigurationError)
