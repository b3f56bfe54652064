from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from appserver import options
from appserver.config import ConfigError
from appserver.ini import read_ini, read_ini_files, split_spec
from appserver.options import Entry, build_config

# The seed tutorial's uwsgi.ini, as written (comments and all).  Only {root} is
# ours, so the paths exist; SEED_VERBATIM keeps the tutorial's own paths.
SEED_TEMPLATE = """\
[uwsgi]
# 使用Nginx连接时使用,Django程序所在服务器地址和端口号p
socket=127.0.0.1:3031
#http=172.16.240.177:8000
# 项目目录绝对路径
chdir={root}/root/from/P8
# 项目中wsgi.py文件的目录,相对于项目目录
wsgi-file=P8/wsgi.py
# 进程数(机器核数的1倍)
processes=4
# 线程数
threads=50
# uwsgi服务器的角色
master=True
# 存放进程编号的文件
pidfile=uwsgi.pid
# 日志文件
daemonize=uwsgi.log
# 指定依赖的虚拟环境
virtualenv={root}/root/.virtualenvs/text_dev
"""
SEED_VERBATIM = SEED_TEMPLATE.format(root="")


@pytest.fixture(autouse=True)
def _big_somaxconn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "somaxconn"
    path.write_text("65535\n")
    monkeypatch.setattr(options, "SOMAXCONN_PATH", str(path))


def write(tmp_path: Path, text: str, name: str = "uwsgi.ini") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def values(entries: list[Entry]) -> list[tuple[str, str | None]]:
    return [(entry.key, entry.value) for entry in entries]


def ini_error(tmp_path: Path, spec: str = "uwsgi.ini") -> str:
    with pytest.raises(ConfigError) as info:
        read_ini(spec, cwd=str(tmp_path), environ={})
    assert "\n" not in str(info.value)
    return str(info.value)


# -- the seed ----------------------------------------------------------------------------------


def test_seed_ini_reads_as_written(tmp_path: Path) -> None:
    write(tmp_path, SEED_VERBATIM)
    entries = read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})
    assert values(entries) == [
        ("socket", "127.0.0.1:3031"),
        ("chdir", "/root/from/P8"),
        ("wsgi-file", "P8/wsgi.py"),
        ("processes", "4"),
        ("threads", "50"),
        ("master", "True"),
        ("pidfile", "uwsgi.pid"),
        ("daemonize", "uwsgi.log"),
        ("virtualenv", "/root/.virtualenvs/text_dev"),
    ]
    assert {entry.source for entry in entries} == {"uwsgi.ini"}


def test_seed_ini_builds_a_config_when_its_paths_exist(tmp_path: Path) -> None:
    project = tmp_path / "root" / "from" / "P8"
    (project / "P8").mkdir(parents=True)
    (project / "P8" / "wsgi.py").write_text("application = None\n")
    (tmp_path / "root" / ".virtualenvs" / "text_dev").mkdir(parents=True)
    launch = tmp_path / "uwsgi_conf"
    write(launch, SEED_TEMPLATE.format(root=tmp_path))
    entries = read_ini("uwsgi.ini", cwd=str(launch))
    warnings: list[str] = []
    config = build_config(entries, cwd=str(launch), warnings=warnings)
    assert warnings == []
    assert config.sockets == ("127.0.0.1:3031",)
    assert config.chdir == str(project)
    assert config.wsgi_file == str(project / "P8" / "wsgi.py")
    assert (config.processes, config.threads, config.master) == (4, 50, True)
    # Next to the ini, where the tutorial's `uwsgi --stop uwsgi.pid` looks for it.
    assert config.pidfile == str(launch / "uwsgi.pid")
    assert config.daemonize == str(launch / "uwsgi.log")
    assert config.virtualenv == str(tmp_path / "root" / ".virtualenvs" / "text_dev")


def test_seed_ini_with_its_own_paths_names_the_missing_directory(tmp_path: Path) -> None:
    write(tmp_path, SEED_VERBATIM)
    entries = read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})
    with pytest.raises(ConfigError, match=r"^uwsgi\.ini: chdir: directory '/root/from/P8' does"):
        build_config(entries, cwd=str(tmp_path))


# -- syntax --------------------------------------------------------------------------------------


def test_comments_blank_lines_repeats_and_underscores(tmp_path: Path) -> None:
    write(tmp_path, """
; a semicolon comment
# a hash comment
[uwsgi]
  socket = :3031
socket=:3032
   ; indented comment
wsgi_file = app.py
enable-threads
log-format = %(addr) # not a comment
""")
    assert values(read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})) == [
        ("socket", ":3031"),
        ("socket", ":3032"),
        ("wsgi-file", "app.py"),
        ("enable-threads", None),
        ("log-format", "%(addr) # not a comment"),
    ]


def test_only_the_asked_section_is_read(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nprocesses = 1\n[prod]\nprocesses = 8\n[uwsgi]\nthreads = 2\n")
    assert values(read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})) == [
        ("processes", "1"), ("threads", "2"),
    ]
    assert values(read_ini("uwsgi.ini:prod", cwd=str(tmp_path), environ={})) == [
        ("processes", "8"),
    ]


def test_bom_and_crlf(tmp_path: Path) -> None:
    (tmp_path / "uwsgi.ini").write_bytes(b"\xef\xbb\xbf[uwsgi]\r\nmaster = true\r\n")
    assert values(read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})) == [("master", "true")]


def test_split_spec() -> None:
    assert split_spec("uwsgi.ini") == ("uwsgi.ini", None)
    assert split_spec("uwsgi.ini:prod") == ("uwsgi.ini", "prod")
    assert split_spec(":prod") == ("", "prod")
    assert split_spec("dir:x/uwsgi.ini") == ("dir:x/uwsgi.ini", None)


# -- errors ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert ini_error(tmp_path, "nope.ini") == (
        "nope.ini: cannot read ini file: No such file or directory"
    )


def test_missing_section(tmp_path: Path) -> None:
    write(tmp_path, "[app]\nmaster = true\n")
    assert ini_error(tmp_path) == "uwsgi.ini: no [uwsgi] section"
    assert ini_error(tmp_path, "uwsgi.ini:prod") == "uwsgi.ini: no [prod] section"


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "uwsgi.ini").write_bytes(b"[uwsgi]\nchdir = /caf\xe9\n")
    assert ini_error(tmp_path) == "uwsgi.ini: line 2: not valid UTF-8"


def test_malformed_lines(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi\nmaster = true\n")
    assert ini_error(tmp_path).startswith("uwsgi.ini: line 1: malformed section header")
    write(tmp_path, "[uwsgi]\n= true\n")
    assert ini_error(tmp_path) == "uwsgi.ini: line 2: expected 'option = value'"


def test_bad_value_error_names_file_and_key(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nsocket = :1\nmodule = m\nharakiri = x\n")
    entries = read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})
    with pytest.raises(ConfigError) as info:
        build_config(entries, cwd=str(tmp_path))
    assert str(info.value) == "uwsgi.ini: harakiri: expected an integer, got 'x'"


# -- expansion ------------------------------------------------------------------------------------


def test_magic_variables(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\n"
                    "a = %d|%p|%s|%n|%e|%c|%x|%o|%%|%%d\n"
                    "b = %D|%N\n"
                    "c = %h %k %q\n",
          name="conf/app.ini")
    entries = read_ini("conf/app.ini", cwd=str(tmp_path), environ={})
    directory = str(tmp_path / "conf")
    assert entries[0].value == (
        f"{directory}/|{directory}/app.ini|app.ini|app|ini|conf|app.ini:uwsgi|conf/app.ini|%|%d"
    )
    assert entries[1].value == f"{directory}/|app"
    assert entries[2].value == f"{socket.gethostname()} {os.cpu_count() or 1} %q"


def test_magic_directory_components(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nfirst = %0\n", name="app.ini")
    entries = read_ini("app.ini", cwd=str(tmp_path), environ={})
    assert entries[0].value == str(tmp_path).strip("/").split("/")[0]


def test_placeholders_refer_to_earlier_options(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\n"
                    "project = mysite\n"
                    "base = /srv\n"
                    "chdir = %(base)/%(project)\n"
                    "module = %(project).wsgi:application\n"
                    "pidfile = %(chdir)/app.pid\n"
                    "log-format = %(addr) %(uri) %(project)\n")
    assert values(read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})) == [
        # project and base are referenced, so they are placeholders and dropped.
        ("chdir", "/srv/mysite"),
        ("module", "mysite.wsgi:application"),
        ("pidfile", "/srv/mysite/app.pid"),
        ("log-format", "%(addr) %(uri) mysite"),
    ]


def test_unreferenced_unknown_key_is_kept_for_build_config_to_reject(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nsocket = :1\nmodule = m\nproceses = 4\n")
    entries = read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})
    with pytest.raises(ConfigError) as info:
        build_config(entries, cwd=str(tmp_path))
    assert str(info.value) == "uwsgi.ini: unknown option 'proceses' (did you mean 'processes'?)"


def test_set_placeholder(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nset-placeholder = port=3031\nsocket = :%(port)\n")
    assert values(read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})) == [("socket", ":3031")]


def test_environment_variables(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nprocesses = $(WORKERS)\nchdir = $(HOME)/app$(MISSING)\n")
    warnings: list[str] = []
    entries = read_ini("uwsgi.ini", cwd=str(tmp_path), environ={"WORKERS": "3", "HOME": "/h"},
                       warnings=warnings)
    assert values(entries) == [("processes", "3"), ("chdir", "/h/app")]
    assert warnings == [
        "uwsgi.ini: chdir: environment variable MISSING is not set; using an empty string"
    ]


def test_expansion_is_single_pass(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nraw = $(X)\nsocket = %(raw)\n")
    entries = read_ini("uwsgi.ini", cwd=str(tmp_path), environ={"X": "%d$(Y)"})
    assert values(entries) == [("socket", "%d$(Y)")]


# -- includes and several files -------------------------------------------------------------------


def test_ini_includes_files_and_sections_in_place(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nsocket = :1\nini = base.ini\nini = :extra\nthreads = 9\n"
                    "[extra]\nharakiri = 30\n")
    write(tmp_path, "[uwsgi]\nprocesses = 2\n", name="base.ini")
    entries = read_ini("uwsgi.ini", cwd=str(tmp_path), environ={})
    assert [(e.key, e.value, e.source) for e in entries] == [
        ("socket", ":1", "uwsgi.ini"),
        ("processes", "2", "base.ini"),
        ("harakiri", "30", "uwsgi.ini"),
        ("threads", "9", "uwsgi.ini"),
    ]


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nini = other.ini\n")
    write(tmp_path, "[uwsgi]\nini = uwsgi.ini\n", name="other.ini")
    assert ini_error(tmp_path) == "uwsgi.ini: [uwsgi] includes itself"


def test_placeholders_carry_across_files(tmp_path: Path) -> None:
    write(tmp_path, "[uwsgi]\nproject = shop\n", name="base.ini")
    write(tmp_path, "[uwsgi]\nmodule = %(project).wsgi\n", name="app.ini")
    entries = read_ini_files(["base.ini", "app.ini"], cwd=str(tmp_path), environ={})
    assert values(entries) == [("module", "shop.wsgi")]
