#!/usr/bin/env bash
# Assemble the retrieval-evaluation corpus from Debian-packaged documentation.
#
#   scripts/eval/setup_corpus.sh [DIR]
#
# DIR defaults to $NANORAG_EVAL_DIR/corpus, else /var/tmp/nanorag-eval/corpus
# (never inside the repository). The files come from the packages named in
# scripts/eval/corpus.tsv, installed here with apt-get when missing (root or
# sudo); the list of files is pinned in that file, so every machine builds the
# same set. Compressed files (.gz) are decompressed into the corpus; nothing
# else is changed. The package versions seen are written to DIR/../versions.txt.
#
# Idempotent: installed packages are left alone and the corpus dir is rebuilt
# from scratch each run (it is small). Exits non-zero when a listed file is
# missing, or when fewer than 200 documents or not all four formats result.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
list="$here/corpus.tsv"
base="${NANORAG_EVAL_DIR:-/var/tmp/nanorag-eval}"
dir="${1:-$base/corpus}"
case "$(realpath -m "$dir")/" in
"$(realpath "$here/../..")"/*) echo "setup_corpus: $dir is inside the repository" >&2; exit 2 ;;
esac

pkgs=$(grep -v '^#' "$list" | cut -f1 | sort -u)
missing=""
for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup_corpus: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing
    # a container image may exclude /usr/share/doc from installs: say so
fi

rm -rf "$dir"
mkdir -p "$dir"
bad=0
while IFS=$'\t' read -r pkg src dst; do
    case "$pkg" in ''|'#'*) continue ;; esac
    if [ ! -f "$src" ]; then
        echo "setup_corpus: missing $src (package $pkg; is /usr/share/doc excluded by dpkg's path-exclude?)" >&2
        bad=1
        continue
    fi
    mkdir -p "$dir/$(dirname "$dst")"
    case "$src" in
    *.gz) gzip -dc "$src" >"$dir/$dst" ;;
    *) cp "$src" "$dir/$dst" ;;
    esac
done <"$list"
[ $bad = 0 ] || exit 1

vers="$(dirname "$dir")/versions.txt"
for p in $pkgs; do
    printf '%s\t%s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p")"
done >"$vers"

echo "setup_corpus: $dir"
echo "packages (name, version):"
sed 's/^/  /' "$vers"
total=0
formats=0
for ext in txt md html pdf; do
    n=$(find "$dir" -type f -name "*.$ext" | wc -l)
    extra=""
    if [ "$ext" = pdf ] && command -v pdfinfo >/dev/null; then
        pages=0
        while IFS= read -r f; do
            p=$(pdfinfo "$f" 2>/dev/null | awk '/^Pages:/ {print $2}')
            pages=$((pages + ${p:-0}))
        done < <(find "$dir" -type f -name '*.pdf')
        extra=" ($pages pages)"
    fi
    printf '  %-5s %4d files%s\n' "$ext" "$n" "$extra"
    total=$((total + n))
    [ "$n" -gt 0 ] && formats=$((formats + 1))
done
printf '  total %4d files, %s\n' "$total" "$(du -sh "$dir" | cut -f1)"
if [ "$total" -lt 200 ] || [ "$formats" -lt 4 ]; then
    echo "setup_corpus: need >= 200 documents in all four formats" >&2
    exit 1
fi
