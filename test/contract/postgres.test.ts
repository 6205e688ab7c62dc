import { BACKENDS } from '../support/backends.js';
import { describeStoreContract } from './store-contract.js';

describeStoreContract('postgres', BACKENDS['postgres']);
