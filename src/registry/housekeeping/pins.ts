// Tags kept from eviction (`ollama-registry pin NAME`), as a small JSON list under .ollama-registry/.
import type { Driver } from '../../storage/driver.js';
import { StateList } from './state-list.js';

export class Pins extends StateList {
  constructor(driver: Driver) {
    super(driver, 'pins.json');
  }
}
