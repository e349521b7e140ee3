"""The Lua scripts: each is a `.lua` file with its header, and names what the Python side names."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

import gatekeeper.store
from gatekeeper.store.base import Control
from gatekeeper.store.redis.scripts import LIBRARY, ScriptName, load_script, lua_source


def _function(source: str, name: str) -> str:
    start = source.index(f"local function {name}(")
    return source[start : source.index("\nend\n", start)]


def test_the_control_fields_lib_lua_reads_are_the_control_values():
    body = _function(lua_source(LIBRARY), "controls")
    hmget = re.search(r"redis\.call\('HMGET', k_control, ([^)]*)\)", body)
    assert hmget is not None, body
    assert re.findall(r"'([^']*)'", hmget.group(1)) == [c.value for c in Control]


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
