// The Krefeld twin viewer: the city's 3D Tiles, station scenes (GLB) and a traffic animation on a
// time slider, drawn with three.js and 3d-tiles-renderer (bundled under ./vendor, no network).
//
// Frames: the tiles, vehicles and scenes are in EPSG:4978 (ECEF) metres. The page draws in a local
// frame around the tileset's anchor: x east, y up, z south (metres), so the city lies flat and float32
// vertex data stays small. `window.twinViewer` exposes the page state for tests (see README.md).

import {
  AmbientLight,
  AnimationMixer,
  BoxGeometry,
  Color,
  DirectionalLight,
  Group,
  HemisphereLight,
  InstancedMesh,
  Matrix4,
  MeshLambertMaterial,
  PerspectiveCamera,
  Quaternion,
  Scene,
  Sphere,
  SRGBColorSpace,
  Vector3,
  WebGLRenderer,
} from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { KTX2Loader } from "three/addons/loaders/KTX2Loader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { TilesRenderer, WGS84_ELLIPSOID } from "3d-tiles-renderer";

const DEG = Math.PI / 180;
// vehicle class -> [length, width, height] (m) and sRGB colour 0..1 (as the scene composer's boxes)
const CLASSES = {
  passenger: [[4.5, 1.8, 1.5], [0.85, 0.85, 0.88]],
  taxi: [[4.6, 1.8, 1.5], [0.96, 0.85, 0.25]],
  delivery: [[6.5, 2.1, 2.6], [0.95, 0.95, 0.95]],
  truck: [[16.5, 2.55, 3.8], [0.25, 0.45, 0.8]],
  trailer: [[16.5, 2.55, 3.8], [0.25, 0.45, 0.8]],
  bus: [[12.0, 2.55, 3.1], [0.9, 0.2, 0.15]],
  coach: [[12.0, 2.55, 3.6], [0.9, 0.2, 0.15]],
  tram: [[30.0, 2.65, 3.4], [0.95, 0.55, 0.1]],
  rail_urban: [[30.0, 2.65, 3.4], [0.95, 0.55, 0.1]],
  bicycle: [[1.8, 0.65, 1.7], [0.15, 0.7, 0.3]],
  emergency: [[6.0, 2.1, 2.6], [1.0, 1.0, 1.0]],
};

const params = new URLSearchParams(location.search);
const errors = [];
const $ = (id) => document.getElementById(id);

function fail(message) {
  errors.push(String(message));
  $("status").textContent = "error: " + message;
}
window.addEventListener("error", (e) => fail(e.message || e));
window.addEventListener("unhandledrejection", (e) => fail(e.reason && e.reason.message ? e.reason.message : e.reason));

// -- renderer, camera, controls ---------------------------------------------------------------------

const renderer = new WebGLRenderer({ antialias: false, powerPreference: "high-performance" });
renderer.setPixelRatio(window.devicePixelRatio);
renderer.setSize(window.innerWidth, window.innerHeight);
renderer.outputColorSpace = SRGBColorSpace;
$("view").appendChild(renderer.domElement);

const scene = new Scene();
scene.background = new Color(0xbfd6ea);
scene.add(new HemisphereLight(0xffffff, 0x6b6256, 1.6));
scene.add(new AmbientLight(0xffffff, 0.4));
const sun = new DirectionalLight(0xffffff, 1.6);
sun.position.set(-0.4, 1.0, 0.6);
scene.add(sun);

const camera = new PerspectiveCamera(50, window.innerWidth / window.innerHeight, 1, 1e5);
const controls = new OrbitControls(camera, renderer.domElement);
controls.maxPolarAngle = 88 * DEG;
controls.screenSpacePanning = false;

// ECEF -> local: a group whose matrix is set once the tileset's anchor is known
const ecefRoot = new Group();
ecefRoot.matrixAutoUpdate = false;
scene.add(ecefRoot);
const localFromEcef = new Matrix4();
let geoidHeight = 0; // m, ellipsoidal minus sea-level heights (the tileset's extras.geoid_height_m)

// KTX2 textures (KHR_texture_basisu): the Basis Universal transcoder (vendor, WebAssembly in a worker)
// turns them into a format this GPU samples directly (ETC1/ETC2, ASTC, BC7, BC1), or RGBA8 where none.
const ktx2Loader = new KTX2Loader()
  .setTranscoderPath(new URL("./vendor/three/addons/libs/basis/", import.meta.url).href)
  .detectSupport(renderer);

const tiles = new TilesRenderer(params.get("tiles") || "../tiles/tileset.json");
tiles.manager.addHandler(/\.(gltf|glb)$/i, new GLTFLoader(tiles.manager).setKTX2Loader(ktx2Loader));
tiles.setCamera(camera);
tiles.setResolutionFromRenderer(camera, renderer);
ecefRoot.add(tiles.group);

let dirty = true;
let frameNo = 0;
const waiters = []; // {frame, resolve}: resolved at the first idle frame at or after `frame`
const needsRender = () => {
  dirty = true;
};
controls.addEventListener("change", needsRender);
for (const type of ["load-model", "dispose-model", "tile-visibility-change", "needs-update"]) {
  tiles.addEventListener(type, needsRender);
}
tiles.addEventListener("load-error", (e) => fail(`tile ${e.url || ""}: ${e.error || "load error"}`));

let tilesetLoaded;
const tilesetReady = new Promise((resolve) => {
  tilesetLoaded = resolve;
});
tiles.addEventListener("load-root-tileset", () => {
  const root = tiles.rootTileset;
  const anchor = root && root.extras && root.extras.anchor;
  const geoid = root && root.extras && root.extras.geoid_height_m;
  geoidHeight = Number.isFinite(geoid) ? geoid : 0;
  const enu = new Matrix4();
  if (anchor && Number.isFinite(anchor.lat) && Number.isFinite(anchor.lon)) {
    WGS84_ELLIPSOID.getEastNorthUpFrame(anchor.lat * DEG, anchor.lon * DEG, anchor.h || 0, enu);
  } else {
    const sphere = new Sphere();
    tiles.getBoundingSphere(sphere);
    const c = WGS84_ELLIPSOID.getPositionToCartographic(sphere.center, {});
    WGS84_ELLIPSOID.getEastNorthUpFrame(c.lat, c.lon, 0, enu);
  }
  // ENU (x east, y north, z up) -> local (x east, y up, z south): a -90 degree turn about x
  localFromEcef.makeRotationX(-Math.PI / 2).multiply(enu.invert());
  ecefRoot.matrix.copy(localFromEcef);
  ecefRoot.matrixWorldNeedsUpdate = true;
  const sphere = new Sphere();
  tiles.getBoundingSphere(sphere);
  sphere.applyMatrix4(localFromEcef);
  if (!cameraParam) homeCamera(sphere);
  tilesetLoaded(sphere);
});

function homeCamera(sphere) {
  const r = Math.max(sphere.radius, 50);
  const target = sphere.center.clone();
  target.y = Math.min(target.y, 0) + 0; // the ground near the anchor
  setCameraNow([target.x, target.y + 0.75 * r, target.z + 0.75 * r], [target.x, target.y, target.z]);
}

/** `?camera=px,py,pz,tx,ty,tz` (the local frame, m): the camera's position and target, or null. */
function parseCamera(text) {
  if (!text) return null;
  const v = text.split(",").map(Number);
  if (v.length !== 6 || !v.every(Number.isFinite)) {
    fail(`camera=${text}: expected six numbers px,py,pz,tx,ty,tz (local frame, m)`);
    return null;
  }
  return { position: v.slice(0, 3), target: v.slice(3) };
}
const cameraParam = parseCamera(params.get("camera"));

function setCameraNow(position, target) {
  camera.position.set(...position);
  controls.target.set(...target);
  controls.update();
  dirty = true;
}

window.addEventListener("resize", () => {
  camera.aspect = window.innerWidth / window.innerHeight;
  camera.updateProjectionMatrix();
  renderer.setSize(window.innerWidth, window.innerHeight);
  tiles.setResolutionFromRenderer(camera, renderer);
  dirty = true;
});

// -- traffic animation: vehicles JSON -> one instanced box mesh per class ----------------------------

const vehicleRoot = new Group();
scene.add(vehicleRoot);
let fleets = []; // {mesh, tracks: [{t: Float64Array, p: Float64Array (local xyz), heading?: deg[]}]}
const mixers = []; // AnimationMixers of the loaded scene GLBs
let timeRange = null; // [first, last] s over the vehicles and the scene animations
let time = 0;

function checkTrack(v, i, url) {
  const where = `${url}: vehicles[${i}]`;
  if (!Array.isArray(v.t) || !Array.isArray(v.p) || v.t.length !== v.p.length || v.t.length < 1) {
    throw new Error(`${where}: expected "t" (times, s) and "p" ([x, y, z] EPSG:4978 m) of one length`);
  }
  for (let k = 0; k < v.t.length; k++) {
    const p = v.p[k];
    if (!Number.isFinite(v.t[k]) || (k > 0 && v.t[k] < v.t[k - 1])) {
      throw new Error(`${where}.t[${k}]: expected a number, not below the one before`);
    }
    if (!Array.isArray(p) || p.length !== 3 || !p.every(Number.isFinite)) {
      throw new Error(`${where}.p[${k}]: expected [x, y, z] numbers`);
    }
  }
}

async function loadVehicles(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const doc = await res.json();
  if (!doc || !Array.isArray(doc.vehicles)) throw new Error(`${url}: expected {"vehicles": [...]}`);
  if (doc.frame && doc.frame !== "EPSG:4978") throw new Error(`${url}: frame: expected "EPSG:4978"`);
  const classes = { ...CLASSES, ...(doc.classes || {}) };
  const byClass = new Map();
  const v3 = new Vector3();
  doc.vehicles.forEach((v, i) => {
    checkTrack(v, i, url);
    const cls = classes[v.class] ? v.class : "passenger";
    const p = new Float64Array(v.p.length * 3);
    v.p.forEach((q, k) => {
      v3.set(q[0], q[1], q[2]).applyMatrix4(localFromEcef);
      p.set([v3.x, v3.y, v3.z], 3 * k);
    });
    if (!byClass.has(cls)) byClass.set(cls, []);
    byClass.get(cls).push({ id: v.id, t: Float64Array.from(v.t), p, heading: v.heading_deg || null });
  });
  for (const [cls, tracks] of byClass) {
    const [[length, width, height], rgb] = classes[cls];
    const geometry = new BoxGeometry(length, height, width).translate(0, height / 2, 0);
    const material = new MeshLambertMaterial({ color: new Color().setRGB(...rgb, SRGBColorSpace) });
    const mesh = new InstancedMesh(geometry, material, tracks.length);
    mesh.frustumCulled = false;
    mesh.name = cls;
    vehicleRoot.add(mesh);
    fleets.push({ cls, rgb, mesh, tracks });
    for (const tr of tracks) extendRange(tr.t[0], tr.t[tr.t.length - 1]);
  }
}

function extendRange(t0, t1) {
  timeRange = timeRange ? [Math.min(timeRange[0], t0), Math.max(timeRange[1], t1)] : [t0, t1];
}

const range = () => timeRange || [0, 0];

const HIDDEN = new Matrix4().makeScale(0, 0, 0);
const UP = new Vector3(0, 1, 0);
const pose = new Matrix4();
const quat = new Quaternion();
const pos = new Vector3();
const ONE = new Vector3(1, 1, 1);

function placeVehicles(t) {
  for (const { mesh, tracks } of fleets) {
    tracks.forEach((tr, i) => {
      const n = tr.t.length;
      if (t < tr.t[0] || t > tr.t[n - 1]) {
        mesh.setMatrixAt(i, HIDDEN);
        return;
      }
      let lo = 0;
      let hi = n - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (tr.t[mid] <= t) lo = mid;
        else hi = mid;
      }
      const span = tr.t[hi] - tr.t[lo];
      const f = span > 0 ? (t - tr.t[lo]) / span : 0;
      const a = 3 * lo;
      const b = 3 * hi;
      pos.set(
        tr.p[a] + f * (tr.p[b] - tr.p[a]),
        tr.p[a + 1] + f * (tr.p[b + 1] - tr.p[a + 1]),
        tr.p[a + 2] + f * (tr.p[b + 2] - tr.p[a + 2]),
      );
      let yaw;
      if (tr.heading) {
        yaw = Math.PI / 2 - tr.heading[lo] * DEG; // clockwise from north -> about +y from +x (east)
      } else {
        yaw = Math.atan2(-(tr.p[b + 2] - tr.p[a + 2]), tr.p[b] - tr.p[a]);
        if (hi === lo) yaw = 0;
      }
      quat.setFromAxisAngle(UP, yaw);
      mesh.setMatrixAt(i, pose.compose(pos, quat, ONE));
    });
    mesh.instanceMatrix.needsUpdate = true;
  }
}

// -- station scenes: GLBs placed at asset.extras.geo_anchor -----------------------------------------

const loader = new GLTFLoader().setKTX2Loader(ktx2Loader);
let current = null; // {root, mixer, info}
let sceneRequests = 0; // loadScene calls so far: only the latest one shows its scene

// The camera for a scene stands VIEW_BACK m behind its anchor and VIEW_UP m above it (a 50 degree
// look down: over the 5-storey blocks that line a street, into the street at the anchor).
const VIEW_BACK = 100;
const VIEW_UP = 120;

function checkAnchor(anchor, url) {
  for (const k of ["lat", "lon", "height"]) {
    if (!anchor || !Number.isFinite(anchor[k])) {
      throw new Error(`${url}: asset.extras.geo_anchor.${k}: expected a number`);
    }
  }
  if (anchor.heading_deg !== undefined && !Number.isFinite(anchor.heading_deg)) {
    throw new Error(`${url}: asset.extras.geo_anchor.heading_deg: expected a number (degrees)`);
  }
}

/** The ENU frame at a scene's anchor in ECEF: its height above the ellipsoid as the GLB states it
 * (height_ellipsoid), else its height above sea level made ellipsoidal with the tileset's geoid. */
function anchorFrame(anchor) {
  const m = new Matrix4();
  const h = Number.isFinite(anchor.height_ellipsoid)
    ? anchor.height_ellipsoid
    : anchor.height + geoidHeight;
  WGS84_ELLIPSOID.getEastNorthUpFrame(anchor.lat * DEG, anchor.lon * DEG, h, m);
  return m;
}

function sceneMatrix(anchor) {
  const m = anchorFrame(anchor);
  // glTF (x east, y up, z south) -> ENU: +90 degrees about x; the heading turns clockwise about up
  m.multiply(new Matrix4().makeRotationZ(-(anchor.heading_deg || 0) * DEG));
  return m.multiply(new Matrix4().makeRotationX(Math.PI / 2));
}

/** The camera for a scene: VIEW_BACK m behind its anchor and VIEW_UP m up, facing along its heading
 * (north without one), looking at the anchor. */
function sceneCamera(local, headingDeg) {
  const h = (headingDeg || 0) * DEG;
  const ahead = [Math.sin(h), 0, -Math.cos(h)]; // local frame: x east, z south
  return {
    position: [local[0] - VIEW_BACK * ahead[0], local[1] + VIEW_UP, local[2] - VIEW_BACK * ahead[2]],
    target: local,
  };
}

/** A scene's own clip of the city (nodes named `city_*`, for stand-alone AR use) is hidden: the
 * tiles draw the city already; the redesign, overlays and vehicles show over them. */
function hideCityClip(object) {
  for (const child of object.children) {
    if (child.name.startsWith("city_")) child.visible = false;
  }
}

/** Draw a scene over the city where the two coincide (its ground and street bands lie on the same
 * terrain as the tiles): its surfaces win the depth test by a small offset. */
function drawOverCity(object) {
  object.traverse((o) => {
    if (!o.material) return;
    for (const m of Array.isArray(o.material) ? o.material : [o.material]) {
      m.polygonOffset = true;
      m.polygonOffsetFactor = -1;
      m.polygonOffsetUnits = -4;
    }
  });
}

async function loadScene(url, { moveCamera = true } = {}) {
  if (current) {
    ecefRoot.remove(current.root);
    mixers.splice(mixers.indexOf(current.mixer), 1);
    current = null;
    dirty = true;
  }
  const request = ++sceneRequests;
  if (!url) return;
  await tilesetReady; // the local frame is known
  const gltf = await loader.loadAsync(url);
  if (request !== sceneRequests) return; // another scene was chosen meanwhile
  const anchor = gltf.asset && gltf.asset.extras && gltf.asset.extras.geo_anchor;
  checkAnchor(anchor, url);
  const root = new Group();
  root.matrixAutoUpdate = false;
  root.matrix.copy(sceneMatrix(anchor));
  hideCityClip(gltf.scene);
  drawOverCity(gltf.scene);
  root.add(gltf.scene);
  ecefRoot.add(root);
  const mixer = new AnimationMixer(gltf.scene);
  for (const clip of gltf.animations) {
    mixer.clipAction(clip).play();
    extendRange(0, clip.duration);
  }
  mixers.push(mixer);
  const ecef = new Vector3().setFromMatrixPosition(anchorFrame(anchor));
  const local = ecef.clone().applyMatrix4(localFromEcef).toArray();
  const name = (gltf.scene.name || url.split("/").pop().replace(/\.glb$/i, "")).trim();
  current = {
    root,
    mixer,
    info: {
      url,
      name,
      anchor: {
        lat: anchor.lat,
        lon: anchor.lon,
        height: anchor.height,
        heading_deg: anchor.heading_deg || 0,
      },
      ecef: ecef.toArray(),
      local,
    },
  };
  if (moveCamera) {
    const view = sceneCamera(local, anchor.heading_deg);
    setCameraNow(view.position, view.target);
  }
  setTime(time);
}

// -- time slider, play/pause, legend ----------------------------------------------------------------

let playing = false;
const slider = $("time");

function setTime(t) {
  const [t0, t1] = range();
  time = Math.min(Math.max(Number(t) || 0, t0), t1);
  slider.value = String(time);
  $("clock").textContent = `${time.toFixed(1)} s`;
  placeVehicles(time);
  for (const mixer of mixers) mixer.setTime(time);
  dirty = true;
}

function refreshControls() {
  const [t0, t1] = range();
  slider.min = String(t0);
  slider.max = String(t1);
  const animated = t1 > t0;
  slider.disabled = !animated;
  $("play").disabled = !animated;
  const legend = $("legend");
  legend.replaceChildren();
  for (const { cls, rgb, tracks } of fleets) {
    const row = document.createElement("div");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = `rgb(${rgb.map((c) => Math.round(255 * c)).join(",")})`;
    row.append(sw, `${cls} (${tracks.length})`);
    legend.append(row);
  }
}

slider.addEventListener("input", () => setTime(slider.value));
$("play").addEventListener("click", () => {
  playing = !playing;
  $("play").textContent = playing ? "pause" : "play";
});

function addSceneOption(url) {
  if ([...$("scene").options].some((o) => o.value === url)) return;
  const opt = document.createElement("option");
  opt.value = url;
  opt.textContent = decodeURIComponent(url.split("/").filter(Boolean).slice(-2).join("/"));
  $("scene").append(opt);
}
const scenes = params.getAll("scene");
scenes.forEach(addSceneOption);
/** Show the scene at `url` ('' or null: none), the camera at it; a promise of the next full frame. */
function showScene(url) {
  if (url) addSceneOption(url);
  $("scene").value = url || "";
  api.loading = loadScene(url || "")
    .then(refreshControls)
    .then(idle)
    .catch((err) => fail(err.message));
  return api.loading;
}
$("scene").addEventListener("change", (e) => showScene(e.target.value));

// -- the frame loop ---------------------------------------------------------------------------------

function idleNow() {
  const s = tiles.stats;
  return (
    tiles.root !== null &&
    !tiles.isLoading &&
    s.queued + s.downloading + s.parsing === 0 &&
    tiles.visibleTiles.size > 0
  );
}

let last = performance.now();
function frame(now) {
  requestAnimationFrame(frame);
  const dt = Math.min((now - last) / 1000, 0.5);
  last = now;
  if (playing) {
    let t = time + dt * Number($("speed").value);
    if (t > range()[1]) t = range()[0];
    setTime(t);
  }
  const dist = camera.position.distanceTo(controls.target);
  camera.near = Math.max(0.5, dist / 2000);
  camera.far = Math.max(2e4, dist * 50);
  camera.updateProjectionMatrix();
  camera.updateMatrixWorld();
  tiles.update();
  frameNo++;
  if (dirty) {
    dirty = false;
    renderer.render(scene, camera);
  }
  const s = tiles.stats;
  $("status").textContent = errors.length
    ? "error: " + errors[errors.length - 1]
    : idleNow()
      ? `${tiles.visibleTiles.size} tiles shown`
      : `loading tiles… ${s.queued + s.downloading + s.parsing} to go`;
  api.tilesLoaded = idleNow();
  if (waiters.length && api.tilesLoaded && !dirty) {
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (frameNo >= waiters[i].frame) waiters.splice(i, 1)[0].resolve(frameNo);
    }
  }
}

/** A promise of the frame number of the next full frame: drawn with every visible tile loaded. */
function idle() {
  dirty = true;
  return new Promise((resolve) => waiters.push({ frame: frameNo + 3, resolve }));
}

const api = {
  ready: null,
  isReady: false,
  firstFrameMs: null, // ms from navigation start to the first full frame
  tilesLoaded: false,
  errors,
  get time() {
    return time;
  },
  get timeRange() {
    return range();
  },
  /** The scene shown: {url, name, anchor: geo_anchor, ecef, local: the anchor in the local frame}. */
  get scene() {
    return current ? structuredClone(current.info) : null;
  },
  setTime(t) {
    setTime(t);
    return idle();
  },
  loading: Promise.resolve(), // the scene the picker (or setScene) asked for: its next full frame
  setScene: (url) => showScene(url),
  /** The camera in the local frame (x east, y up, z south, m), looking at `target`. */
  setCamera({ position, target }) {
    setCameraNow(position, target);
    return idle();
  },
  getCamera() {
    return { position: camera.position.toArray(), target: controls.target.toArray() };
  },
  /** EPSG:4978 [x, y, z] -> the local frame. */
  toLocal(p) {
    return new Vector3(...p).applyMatrix4(localFromEcef).toArray();
  },
  /** EPSG:4978 [x, y, z] -> CSS pixels {x, y} of the page and whether it is in front of the camera. */
  project(p) {
    const v = new Vector3(...p).applyMatrix4(localFromEcef).project(camera);
    return {
      x: ((v.x + 1) / 2) * window.innerWidth,
      y: ((1 - v.y) / 2) * window.innerHeight,
      visible: v.z > -1 && v.z < 1,
    };
  },
  idle,
};
window.twinViewer = api;

api.ready = (async () => {
  requestAnimationFrame(frame);
  await tilesetReady;
  const vehicles = params.get("vehicles");
  if (vehicles) await loadVehicles(vehicles);
  if (scenes.length) {
    $("scene").value = scenes[0];
    await loadScene(scenes[0], { moveCamera: !cameraParam });
  }
  if (cameraParam) setCameraNow(cameraParam.position, cameraParam.target);
  refreshControls();
  setTime(range()[0]);
  await idle();
  api.firstFrameMs = performance.now();
  api.isReady = true;
  return true;
})();
api.ready.catch((err) => fail(err.message));
