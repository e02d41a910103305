#!/bin/sh
# tr_exact.sh OUT_DIR INPUT: the token splitter's output of INPUT, computed with
# tr, written to OUT_DIR/$(basename INPUT). The reference of rows 1-3.
#
# `LC_ALL=C tr -s '[:space:]' '\n'` turns every run of ASCII whitespace (space,
# \t \n \v \f \r: exactly bytes.split's) into one newline. That is the SPEC's
# output, b"".join(t + b"\n" for t in data.split()), except at the two ends:
#   - INPUT starts with whitespace: tr prints one leading "\n" -> cut by `tail -c +2`;
#   - INPUT ends in a non-whitespace byte: the last token lacks its "\n" -> printf.
# Each fix is chosen per file from its first and last byte, so the work stays
# one tr pass (tail only copies a pipe; `sed '/^$/d'` would cost 5x tr).
set -e
export LC_ALL=C
out="$1/$(basename "$2")"

is_space() {  # is the byte on stdin (if any) ASCII whitespace?
    case "$(od -An -tx1 | tr -d ' \n')" in
        09|0a|0b|0c|0d|20) return 0 ;;
        *) return 1 ;;
    esac
}

if head -c1 "$2" | is_space; then
    tr -s '[:space:]' '\n' < "$2" | tail -c +2 > "$out"
else
    tr -s '[:space:]' '\n' < "$2" > "$out"
fi
if [ -s "$2" ] && ! tail -c1 "$2" | is_space; then
    printf '\n' >> "$out"
fi
