#!/usr/bin/env bash
# Real-kernel conformance stage: the vtd-conformance cases against a real Linux 6.12
# /dev/iommu (booted under QEMU) and against the simulation (vtd-kernel), side by side.
#
#   scripts/real-kernel.sh              # every step; what .ci/run calls
#   scripts/real-kernel.sh STEP...      # deps kernel bin initramfs boot sim report
#
# Guests (both under TCG: KVM is not usable on these machines):
#   selftest  no emulated IOMMU; the iommufd selftest mock driver (IOMMU_TEST_CMD)
#   vtd       QEMU intel-iommu in scalable mode, QEMU's edu device bound to vfio-pci;
#             `vtd-nest probe` runs there too and must find no nesting (exit 1)
#
# Environment:
#   VTD_KCACHE    cache directory (default ~/.cache/vtd-nest/real-kernel): kernel source
#                 tree and the bzImage, keyed by the config fragment and the source
#                 package's version, so a warm run skips the kernel build
#   QEMU_TIMEOUT  seconds per guest (default 300)
#   JOBS          make -j (default: nproc)
#
# Exit status: non-zero when a step cannot be done (no silent skip), when a case fails
# on either side, or when the simulation and the real kernel disagree on a case.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KV=6.12
KPKG=linux-source-$KV
KTAR=/usr/src/$KPKG.tar.xz
CACHE=${VTD_KCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vtd-nest/real-kernel}
KSRC=$CACHE/$KPKG
RUN=$CACHE/run
QEMU_TIMEOUT=${QEMU_TIMEOUT:-300}
JOBS=${JOBS:-$(nproc)}
TARGET=x86_64-unknown-linux-gnu
BIN=$ROOT/target/$TARGET/release/vtd-conformance
NEST_BIN=$ROOT/target/$TARGET/release/vtd-nest
REPORT=$ROOT/docs/CONFORMANCE.md
T_START=$EPOCHREALTIME
mkdir -p "$CACHE" "$RUN"

log() { printf '[real-kernel] %s\n' "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}
# timed NAME CMD...: run CMD and log its wall time.
timed() {
	local name=$1 t0=$EPOCHREALTIME
	shift
	"$@"
	log "$(printf '%-16s %6.1f s' "$name" "$(echo "$EPOCHREALTIME - $t0" | bc)")"
}

# ------------------------------------------------------------------------------ deps
# The backports suite, derived from the system's own Debian sources: same URIs and key as
# the stanza that carries the release's main suite, suite "<codename>-backports".
add_backports() {
	local codename src
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")
	if apt-cache policy 2>/dev/null | grep -q " $codename-backports/"; then
		return
	fi
	if grep -rqs "$codename-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
		return
	fi
	src=/etc/apt/sources.list.d/debian.sources
	if [ -f "$src" ]; then
		# deb822: copy the stanza whose Suites include the bare codename.
		awk -v cn="$codename" '
			BEGIN { RS = ""; FS = "\n" }
			{
				keep = 0
				for (i = 1; i <= NF; i++)
					if ($i ~ /^Suites:/ && (" " $i " ") ~ (" " cn " ")) keep = 1
				if (!keep || done) next
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Suites:/) print "Suites: " cn "-backports"
					else if ($i !~ /^#/) print $i
				}
				done = 1
			}' "$src" >"/etc/apt/sources.list.d/$codename-backports.sources"
		[ -s "/etc/apt/sources.list.d/$codename-backports.sources" ] ||
			die "no '$codename' stanza in $src to derive the backports suite from"
	elif [ -f /etc/apt/sources.list ]; then
		# one-line format: reuse the first "deb URI codename ..." line.
		src=$(awk -v cn="$codename" '$1 == "deb" && $3 == cn { $3 = cn "-backports"; print; exit }' \
			/etc/apt/sources.list)
		[ -n "$src" ] || die "no '$codename' line in /etc/apt/sources.list"
		echo "$src" >"/etc/apt/sources.list.d/$codename-backports.list"
	else
		die "no Debian sources file to derive the backports suite from"
	fi
	log "added $codename-backports from the system's Debian sources"
}

# installed PKG: the package is installed (not merely known, or removed with its
# configuration files left).
installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

step_deps() {
	local main=() bpo=() p codename
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")
	for p in busybox-static cpio flex bison bc libelf-dev gcc make libc6-dev xz-utils binutils; do
		installed "$p" || main+=("$p")
	done
	# Bookworm's own QEMU (7.2) is older than the tested 10.0; the kernel source comes
	# from whichever suite has it.
	if ! installed qemu-system-x86 ||
		! dpkg-query -W -f='${Version}' qemu-system-x86 | grep -q '^1:1[0-9]'; then
		bpo+=(qemu-system-x86)
	fi
	[ -f "$KTAR" ] || bpo+=("$KPKG")
	if ((${#main[@]} + ${#bpo[@]})); then
		export DEBIAN_FRONTEND=noninteractive
		add_backports
		apt-get update -q >/dev/null
		if ((${#bpo[@]})); then
			apt-get install -y -q --no-install-recommends -t "$codename-backports" "${bpo[@]}" >/dev/null
		fi
		if ((${#main[@]})); then
			apt-get install -y -q --no-install-recommends "${main[@]}" >/dev/null
		fi
	fi
	command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed"
	[ -f "$KTAR" ] || die "$KTAR is missing"
	[ -x /bin/busybox ] || die "busybox-static is not installed"
	log "$(qemu-system-x86_64 --version | head -1); $KPKG $(dpkg-query -W -f='${Version}' "$KPKG")"
}

# ------------------------------------------------------------------------------ kernel
# tinyconfig plus what the two guests need. IOMMUFD_TEST needs DEBUG_KERNEL,
# FAULT_INJECTION and RUNTIME_TESTING_MENU; INTEL_IOMMU needs ACPI and PCI_MSI; tinyconfig
# lacks ELF, scripts, a tty, printk, /proc and /sys.
write_fragment() {
	cat <<'EOF'
CONFIG_64BIT=y
CONFIG_KERNEL_GZIP=y
CONFIG_PRINTK=y
CONFIG_PRINTK_TIME=y
CONFIG_BUG=y
CONFIG_TTY=y
CONFIG_SERIAL_8250=y
CONFIG_SERIAL_8250_CONSOLE=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_DEVTMPFS=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_FUTEX=y
CONFIG_EVENTFD=y
CONFIG_MULTIUSER=y
CONFIG_ACPI=y
CONFIG_PCI=y
CONFIG_PCI_MSI=y
CONFIG_DEBUG_KERNEL=y
CONFIG_FAULT_INJECTION=y
CONFIG_RUNTIME_TESTING_MENU=y
CONFIG_IOMMU_SUPPORT=y
CONFIG_INTEL_IOMMU=y
CONFIG_INTEL_IOMMU_SVM=y
CONFIG_IRQ_REMAP=y
CONFIG_IOMMUFD=y
CONFIG_IOMMUFD_TEST=y
CONFIG_VFIO=y
CONFIG_VFIO_DEVICE_CDEV=y
CONFIG_VFIO_PCI=y
EOF
}

kconfig() {
	make -s ARCH=x86_64 tinyconfig
	./scripts/kconfig/merge_config.sh -m .config "$RUN/guest.config" >/dev/null
	make -s ARCH=x86_64 olddefconfig
	# Every line of the fragment must survive dependency resolution.
	local line lost=0
	while IFS= read -r line; do
		grep -qxF "$line" .config || {
			log "config lost: $line"
			lost=1
		}
	done <"$RUN/guest.config"
	return $lost
}

step_kernel() {
	local key
	write_fragment >"$RUN/guest.config"
	key=$( (cat "$RUN/guest.config" && dpkg-query -W -f='${Version}' "$KPKG") | sha256sum | cut -c1-16)
	if [ -f "$CACHE/bzImage" ] && [ "$(cat "$CACHE/bzImage.key" 2>/dev/null)" = "$key" ]; then
		log "kernel cached ($CACHE/bzImage, key $key)"
		echo warm >"$RUN/kernel-state"
		return
	fi
	echo cold >"$RUN/kernel-state"
	if [ ! -f "$KSRC/.unpacked-$key" ]; then
		rm -rf "$KSRC"
		timed unpack tar -C "$CACHE" -xf "$KTAR"
		touch "$KSRC/.unpacked-$key"
	fi
	(
		cd "$KSRC"
		timed kconfig kconfig
		timed bzImage make -s ARCH=x86_64 -j"$JOBS" bzImage
		cp arch/x86/boot/bzImage "$CACHE/bzImage"
	) || die "kernel build"
	echo "$key" >"$CACHE/bzImage.key"
	log "kernel built: $(stat -c %s "$CACHE/bzImage") bytes, key $key"
}

# ------------------------------------------------------------------------------ bin
# A static glibc binary; the explicit --target keeps crt-static away from build scripts
# and proc macros.
step_bin() {
	(
		cd "$ROOT"
		RUSTFLAGS='-C target-feature=+crt-static' timed cargo cargo build -q --release \
			--target "$TARGET" -p vtd-conformance --bin vtd-conformance -p vtd-nest --bin vtd-nest
	) || die "building the conformance and vtd-nest binaries"
	# A static(-pie) executable has no program interpreter.
	local b
	for b in "$BIN" "$NEST_BIN"; do
		! readelf -l "$b" | grep -q INTERP || die "$b is not static"
	done
}

# ------------------------------------------------------------------------------ initramfs
write_init() {
	cat <<'EOF'
#!/bin/busybox sh
# PID 1: mount, bind every edu device (1234:11e8) to vfio-pci, run the cases of the suite
# named by "suite=" on the kernel command line, power off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "GUEST kernel=$(uname -r) suite=$suite"
for d in /sys/bus/pci/devices/*; do
	if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then
		echo vfio-pci >"$d/driver_override"
		echo "${d##*/}" >/sys/bus/pci/drivers_probe
		echo "GUEST edu ${d##*/} driver=$(basename "$(readlink "$d/driver")")"
	fi
done
/vtd-conformance real "$suite"
echo "GUEST_EXIT=$?"
if [ "$suite" = vtd ]; then
	/vtd-nest probe >/probe.txt 2>&1
	echo "GUEST_PROBE_EXIT=$?"
	sed 's/^/GUEST probe /' /probe.txt
fi
dmesg | grep -iE 'dmar|iommu|vfio' | tail -n 20 | sed 's/^/GUEST dmesg /'
poweroff -f
EOF
}

step_initramfs() {
	local r=$RUN/initramfs
	rm -rf "$r"
	mkdir -p "$r/bin" "$r/proc" "$r/sys" "$r/dev"
	cp /bin/busybox "$r/bin/busybox"
	write_init >"$r/init"
	chmod +x "$r/init"
	cp "$BIN" "$r/vtd-conformance"
	cp "$NEST_BIN" "$r/vtd-nest"
	(cd "$r" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet | gzip -1 >"$RUN/initramfs.cpio.gz") ||
		die "packing the initramfs"
}

# ------------------------------------------------------------------------------ boot
boot_one() { # boot_one SUITE QEMU_ARGS...
	local suite=$1 rc=0
	shift
	timeout "$QEMU_TIMEOUT" qemu-system-x86_64 -accel tcg -machine q35 -cpu max -m 512 -smp 1 \
		-nic none "$@" -kernel "$CACHE/bzImage" -initrd "$RUN/initramfs.cpio.gz" \
		-append "console=ttyS0 loglevel=1 panic=-1 suite=$suite" \
		-nographic -no-reboot </dev/null >"$RUN/real-$suite.log" 2>&1 || rc=$?
	((rc == 0)) || die "guest $suite: qemu exited with $rc (log: $RUN/real-$suite.log)"
	grep -q '^GUEST_EXIT=' "$RUN/real-$suite.log" ||
		die "guest $suite did not finish its cases (log: $RUN/real-$suite.log)"
	log "guest $suite: $(grep -a -o -m1 'GUEST kernel=.*' "$RUN/real-$suite.log" | tr -d '\r'), $(grep -a -c 'CASE ' "$RUN/real-$suite.log") case lines"
}

step_boot() {
	timed guest-selftest boot_one selftest
	timed guest-vtd boot_one vtd -device intel-iommu,intremap=on,x-scalable-mode=on -device edu
	check_probe
}

# `vtd-nest probe` on the real kernel, through the CLI's own path (opening /dev/iommu and
# every cdev in /dev/vfio/devices): QEMU's unit has no nesting, so exit 1, and the lines
# must say why. The library it calls is a conformance case; this holds the command.
check_probe() {
	local l=$RUN/real-vtd.log want
	grep -a -q '^GUEST_PROBE_EXIT=1' "$l" ||
		die "vtd-nest probe in the vtd guest: $(grep -a -m1 '^GUEST_PROBE_EXIT=' "$l" | tr -d '\r') (want 1; log: $l)"
	for want in 'on /dev/iommu' 'nested translation (ECAP.NEST) *no' \
		'erratum 772415 (SPR17) flag *set' 'IOMMU_HWPT_ALLOC NEST_PARENT *refused, EOPNOTSUPP' \
		'verdict: vtd-viommu cannot run here: the host VT-d unit does not support nested translation'; do
		grep -a -q "^GUEST probe .*$want" "$l" || die "vtd-nest probe in the vtd guest did not print /$want/ (log: $l)"
	done
	log "vtd-nest probe on the real kernel: exit 1, $(grep -a -o -m1 'verdict: .*' "$l" | tr -d '\r' | cut -c1-60)..."
}

# ------------------------------------------------------------------------------ sim
# The same cases against the simulation, on the host, with the same binary.
step_sim() {
	local s
	for s in selftest vtd; do
		"$BIN" sim "$s" >"$RUN/sim-$s.log" 2>&1 || true
		grep -q '^CASE ' "$RUN/sim-$s.log" || die "simulation run $s printed no case (log: $RUN/sim-$s.log)"
	done
}

# ------------------------------------------------------------------------------ report
step_report() {
	local total state t_total
	state=$(cat "$RUN/kernel-state" 2>/dev/null || echo unknown)
	t_total=$(echo "$EPOCHREALTIME - $T_START" | bc)
	# The timing of this run becomes the latest figure for its kind (cold: the kernel was
	# built; warm: it came from the cache). Only whole runs (every step) count.
	if [ "${ALL_STEPS:-0}" = 1 ]; then
		printf '%s %.1f %s\n' "$state" "$t_total" "$(date -u +%FT%TZ)" >>"$CACHE/timings"
	fi
	"$BIN" report \
		--real "$RUN/real-selftest.log" --real "$RUN/real-vtd.log" \
		--sim "$RUN/sim-selftest.log" --sim "$RUN/sim-vtd.log" \
		--timings "$CACHE/timings" --out "$REPORT" || total=$?
	return "${total:-0}"
}

main() {
	local s steps=("$@")
	if ((${#steps[@]} == 0)); then
		steps=(deps kernel bin initramfs boot sim report)
		ALL_STEPS=1
	fi
	for s in "${steps[@]}"; do
		case $s in
		deps | kernel | bin | initramfs | boot | sim | report) "step_$s" ;;
		*)
			echo "usage: $0 [deps|kernel|bin|initramfs|boot|sim|report]..." >&2
			exit 2
			;;
		esac
	done
}
main "$@"
