# Sourced by scripts/run.sh and `make check-config` (POSIX sh), from the repository root.
#
# The shipped configs carry no ACL secret: they read ACL_SYSTEM_1_SECRET and
# ACL_SYSTEM_2_SECRET. This generates a random one per caller on first use, kept
# in run/system-N.secret (mode 600, not in git), and exports the variables unless
# they are already set.
mkdir -p run
for n in 1 2; do
  file="run/system-$n.secret"
  if [ ! -s "$file" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$file")
    echo "generated a secret for ACL system-$n in $file" >&2
  fi
done
: "${ACL_SYSTEM_1_SECRET:=$(cat run/system-1.secret)}"
: "${ACL_SYSTEM_2_SECRET:=$(cat run/system-2.secret)}"
export ACL_SYSTEM_1_SECRET ACL_SYSTEM_2_SECRET
