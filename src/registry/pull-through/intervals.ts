// A set of half-open byte intervals [start, end), kept sorted and merged: which bytes of a
// blob being filled are already on disk.
export class IntervalSet {
  private r: Array<[number, number]> = [];

  constructor(init: Array<[number, number]> = []) {
    for (const [s, e] of init) this.add(s, e);
  }

  add(start: number, end: number): void {
    if (end <= start) return;
    const out: Array<[number, number]> = [];
    let s = start;
    let e = end;
    let placed = false;
    for (const [a, b] of this.r) {
      if (b < s) out.push([a, b]);
      else if (a > e) {
        if (!placed) {
          out.push([s, e]);
          placed = true;
        }
        out.push([a, b]);
      } else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    if (!placed) out.push([s, e]);
    this.r = out;
  }

  /** End of the filled run that contains `p`, or `p` itself when `p` is not filled. */
  runEnd(p: number): number {
    for (const [a, b] of this.r) {
      if (a <= p && p < b) return b;
      if (a > p) break;
    }
    return p;
  }

  /** Start of the first filled interval at or after `p` (or Infinity). */
  nextStart(p: number): number {
    for (const [a, b] of this.r) if (b > p) return Math.max(a, p);
    return Infinity;
  }

  total(): number {
    return this.r.reduce((n, [a, b]) => n + b - a, 0);
  }

  /** The holes in [0, size). */
  gaps(size: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let p = 0;
    for (const [a, b] of this.r) {
      if (a > p) out.push([p, Math.min(a, size)]);
      p = Math.max(p, b);
    }
    if (p < size) out.push([p, size]);
    return out;
  }

  toJSON(): Array<[number, number]> {
    return this.r.map(([a, b]) => [a, b]);
  }
}
