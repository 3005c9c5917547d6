#!/usr/bin/env bash
# Builds the mediaedge Debian package with dpkg-deb, no debhelper needed.
# Usage: packaging/deb/build.sh BINARY VERSION OUTDIR
# Writes OUTDIR/mediaedge_<version>_<arch>.deb and prints its path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
bin="$(realpath "$1")"
version="$2"
out="$3"
command -v dpkg-deb >/dev/null || { echo "dpkg-deb not found (apt-get install dpkg)" >&2; exit 1; }
[ -x "$bin" ] || { echo "$bin not built (make build)" >&2; exit 1; }

# Debian versions start with a digit: v1.2.3 -> 1.2.3; a commit id or a
# dirty tree -> 0.0~git<date>.<id>.
case "$version" in
	v[0-9]*) version="${version#v}" ;;
	[0-9]*) ;;
	*) version="0.0~git$(date -u +%Y%m%d).$(printf '%s' "$version" | tr -c 'A-Za-z0-9.+~\n' '.')" ;;
esac
version="${version//-/.}"
arch="$(dpkg --print-architecture)"

root="$(mktemp -d)"
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$bin" "$root/usr/bin/mediaedge"
install -d "$root/lib/systemd/system"
sed 's|@BINDIR@|/usr/bin|g' "$top/systemd/mediaedge.service.in" > "$root/lib/systemd/system/mediaedge.service"
chmod 0644 "$root/lib/systemd/system/mediaedge.service"
install -D -m 0644 "$top/systemd/mediaedge.sysusers" "$root/usr/lib/sysusers.d/mediaedge.conf"
install -D -m 0644 "$top/systemd/mediaedge.tmpfiles" "$root/usr/lib/tmpfiles.d/mediaedge.conf"
install -D -m 0644 "$top/systemd/mediaedge.sysctl" "$root/usr/lib/sysctl.d/60-mediaedge.conf"
install -d -m 0750 "$root/etc/mediaedge"
install -m 0640 "$top/systemd/mediaedge.yaml" "$root/etc/mediaedge/mediaedge.yaml"

# Manual pages and shell completions come from the command tree.
install -d "$root/usr/share/man/man1"
"$bin" man --dir "$root/usr/share/man/man1"
gzip -9n "$root"/usr/share/man/man1/*.1
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
	"$root/usr/share/fish/vendor_completions.d"
"$bin" completion bash > "$root/usr/share/bash-completion/completions/mediaedge"
"$bin" completion zsh > "$root/usr/share/zsh/vendor-completions/_mediaedge"
"$bin" completion fish > "$root/usr/share/fish/vendor_completions.d/mediaedge.fish"

doc="$root/usr/share/doc/mediaedge"
install -D -m 0644 "$here/copyright" "$doc/copyright"
install -d "$doc/examples" "$doc/contrib"
for d in "$top"/examples/*/; do
	install -D -m 0644 "$d/mediaedge.yaml" "$doc/examples/$(basename "$d").yaml"
done
cp -r "$top/contrib/grafana" "$top/contrib/prometheus" "$doc/contrib/"
find "$doc" -type d -exec chmod 0755 {} + ; find "$doc" -type f -exec chmod 0644 {} +
for f in "$top"/docs/*.md; do install -m 0644 "$f" "$doc/"; done

install -d "$root/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" "$here/control.in" > "$root/DEBIAN/control"
echo /etc/mediaedge/mediaedge.yaml > "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/$s" "$root/DEBIAN/$s"; done

mkdir -p "$out"
deb="$out/mediaedge_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
