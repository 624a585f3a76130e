// ollama's machine keys (protocol §6): `ssh-ed25519 AAAA…` lines, and the signature of a token
// request, `<key base64>:<signature base64>` over `GET,<token URL>,<constant>`.
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';

/** base64(hex(sha256(""))): the constant third field of ollama's signed message. */
export const SIGNED_SUFFIX = Buffer.from(createHash('sha256').update('').digest('hex')).toString('base64');

export interface SshKey {
  /** The base64 field of the key line: SSH wire format `string "ssh-ed25519" ‖ string <32 bytes>`. */
  blob: string;
  /** As `ssh-keygen -l` prints it: SHA256:<base64 without padding>. */
  fingerprint: string;
  key: KeyObject;
}

const B64_RE = /^[A-Za-z0-9+/]+={0,2}$/;

/** Parse the base64 key blob; null when it is not a canonical ed25519 SSH public key. */
export function parseKeyBlob(blob: string): SshKey | null {
  if (blob.length > 200 || !B64_RE.test(blob)) return null;
  const wire = Buffer.from(blob, 'base64');
  if (wire.toString('base64') !== blob || wire.length !== 51) return null;
  if (wire.readUInt32BE(0) !== 11 || wire.subarray(4, 15).toString('latin1') !== 'ssh-ed25519' || wire.readUInt32BE(15) !== 32) return null;
  const raw = wire.subarray(19);
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  return { blob, fingerprint: fingerprintOf(wire), key };
}

export function fingerprintOf(wire: Buffer): string {
  return `SHA256:${createHash('sha256').update(wire).digest('base64').replace(/=+$/, '')}`;
}

/** A key line as users paste it (`ssh-ed25519 AAAA… [comment]`); throws with a readable reason. */
export function parseKeyLine(line: string): SshKey & { comment?: string } {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2 || parts[0] !== 'ssh-ed25519') {
    throw new Error('expected an ed25519 public key line: "ssh-ed25519 AAAA…" (the content of ~/.ollama/id_ed25519.pub)');
  }
  const k = parseKeyBlob(parts[1]!);
  if (!k) throw new Error('the key after "ssh-ed25519" is not a valid ed25519 public key (is it complete, on one line?)');
  const comment = parts.slice(2).join(' ');
  return { ...k, ...(comment ? { comment } : {}) };
}

/** Check ollama's signature of `GET,<url>,<constant>`. */
export function verifyTokenRequest(key: KeyObject, url: string, signatureB64: string): boolean {
  if (!B64_RE.test(signatureB64)) return false;
  const sig = Buffer.from(signatureB64, 'base64');
  if (sig.length !== 64) return false;
  return verify(null, Buffer.from(`GET,${url},${SIGNED_SUFFIX}`), key, sig);
}
