"""The Lua scripts: each is a `.lua` file with its header, and names what the Python side names."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

import gatekeeper.store
from gatekeeper.errors import Refusal
from gatekeeper.store.base import Control, EndReason, Mode
from gatekeeper.store.redis.scripts import LIBRARY, ScriptName, load_script, lua_source


def _function(source: str, name: str) -> str:
    start = source.index(f"local function {name}(")
    return source[start : source.index("\nend\n", start)]


def test_the_control_fields_lib_lua_reads_are_the_control_values():
    body = _function(lua_source(LIBRARY), "controls")
    hmget = re.search(r"redis\.call\('HMGET', k_control, ([^)]*)\)", body)
    assert hmget is not None, body
    assert re.findall(r"'([^']*)'", hmget.group(1)) == [c.value for c in Control]


def test_the_reasons_the_scripts_write_are_end_reason_values():
    literals = set(re.findall(r"'([a-z_]+)'", "\n".join(map(lua_source, [LIBRARY, *ScriptName]))))
    # Every reason but the two a leave is given (RedisStore.leave passes them in ARGV) is
    # written by a script itself, and nothing shaped like a reason is anything else.
    assert set(EndReason) - {EndReason.LEFT, EndReason.REVOKED} <= literals
    assert {x for x in literals if x.endswith("_timeout")} <= set(EndReason)
    finish = _function(lua_source(LIBRARY), "finish")
    assert f"if reason == '{EndReason.LEFT.value}' then status = 'LEFT' end" in finish
    lapsed = _function(lua_source(LIBRARY), "lapsed")
    assert set(re.findall(r"'([a-z_]+)'", lapsed)) == {"claim_timeout", "idle_timeout"}


def test_the_refusals_and_modes_join_lua_names_are_the_python_values():
    join = lua_source(ScriptName.JOIN)
    assert set(re.findall(r"\{'REFUSED', '([a-z_]+)'", join)) == set(Refusal)
    assert f"mode == '{Mode.CLOSED.value}'" in join
    for name in (ScriptName.POLL, ScriptName.GRANT):
        assert f"'{Mode.CLOSED.value}'" in lua_source(name)


@pytest.mark.parametrize("name", list(ScriptName))
def test_every_script_is_a_lua_file_with_its_header_loaded_behind_the_library(name: ScriptName):
    source = lua_source(name)
    assert source.startswith(f"-- {name.value}: ")
    for part in ("\n-- KEYS: ", "\n-- ARGV: ", "\n-- Returns "):
        assert part in source
    assert load_script(name) == lua_source(LIBRARY) + "\n" + source


def test_the_lua_files_are_the_scripts_and_the_library():
    lua = resources.files("gatekeeper.store") / "lua"
    found = {entry.name.removesuffix(".lua") for entry in lua.iterdir()}
    assert found == {LIBRARY, *ScriptName}


def test_no_lua_is_written_inline_in_python():
    package = Path(gatekeeper.store.__file__).parent
    inline = [str(p) for p in package.rglob("*.py") if "redis.call(" in p.read_text()]
    assert inline == []
