// ed25519 private keys in OpenSSH's file format, the one ollama keeps in ~/.ollama/id_ed25519
// (and ssh-keygen writes), so a key can move between ollama, ssh-keygen and this registry.
// Node's crypto reads PKCS#8 PEM but not this format; it is small enough to do here (PROTOCOL.key).
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';

function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  u32(): number {
    if (this.at + 4 > this.buf.length) throw new Error('it ends early');
    const n = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return n;
  }
  bytes(): Buffer {
    const n = this.u32();
    if (this.at + n > this.buf.length) throw new Error('it ends early');
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  text(): string {
    return this.bytes().toString('latin1');
  }
}

/** The raw 32-byte public key of an ed25519 KeyObject (private or public). */
export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return Buffer.from(pub.export({ format: 'jwk' }).x!, 'base64url');
}

/** The base64 field of an `ssh-ed25519 AAAA…` line. */
export function publicKeyBlob(key: KeyObject): string {
  return Buffer.concat([sshString('ssh-ed25519'), sshString(rawPublicKey(key))]).toString('base64');
}

/**
 * Read an unencrypted ed25519 private key: OpenSSH format (ollama, ssh-keygen) or PKCS#8 PEM.
 * Throws with a reason a person can act on.
 */
export function parsePrivateKey(text: string): KeyObject {
  const t = text.trim();
  if (t.startsWith('-----BEGIN PRIVATE KEY-----')) {
    const k = createPrivateKey(t);
    if (k.asymmetricKeyType !== 'ed25519') throw new Error(`it holds a key of type ${k.asymmetricKeyType}; an ed25519 key is needed`);
    return k;
  }
  if (!t.startsWith(BEGIN) || !t.endsWith(END)) throw new Error(`it is not an OpenSSH private key (expected a file starting with ${BEGIN})`);
  const raw = Buffer.from(t.slice(BEGIN.length, -END.length).replace(/\s+/g, ''), 'base64');
  if (!raw.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('it is not in openssh-key-v1 format');
  const r = new Reader(raw.subarray(MAGIC.length));
  const cipher = r.text();
  r.text(); // kdf name
  r.bytes(); // kdf options
  if (cipher !== 'none') throw new Error('it is protected by a passphrase; the registry needs an unencrypted key, as ollama does (ssh-keygen -p -N "" -f FILE removes it)');
  if (r.u32() !== 1) throw new Error('it holds more than one key');
  r.bytes(); // public key (repeated in the private section)
  const p = new Reader(r.bytes());
  if (p.u32() !== p.u32()) throw new Error('its check bytes do not match (corrupt?)');
  const type = p.text();
  if (type !== 'ssh-ed25519') throw new Error(`it holds a key of type ${type}; an ed25519 key is needed (ssh-keygen -t ed25519)`);
  const pub = p.bytes();
  const priv = p.bytes();
  if (pub.length !== 32 || priv.length !== 64) throw new Error('its ed25519 key has the wrong length');
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: priv.subarray(0, 32).toString('base64url'), x: pub.toString('base64url') }, format: 'jwk' });
  if (!rawPublicKey(key).equals(pub)) throw new Error('its public and private halves do not belong together');
  return key;
}

/** An ed25519 private key in OpenSSH format, as `ssh-keygen -t ed25519 -N ""` (and ollama) write it. */
export function formatPrivateKey(key: KeyObject, comment = ''): string {
  const pub = rawPublicKey(key);
  const seed = Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url');
  const pubWire = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4).readUInt32BE(0);
  let priv = Buffer.concat([u32(check), u32(check), sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([MAGIC, sshString('none'), sshString('none'), sshString(''), u32(1), sshString(pubWire), sshString(priv)]);
  const lines = body.toString('base64').match(/.{1,70}/g)!;
  return `${BEGIN}\n${lines.join('\n')}\n${END}\n`;
}
